"""A scenario is one server, transport, client count and payload size. It measures the
idle memory per connection, then searches the rate ladder for the sustained throughput:
short probe steps up (or down) to the first failure, then a full-window confirmation of
the highest rate that passed (one rung lower if that fails)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bench.context import TOPIC, Context
from bench.loadgen import Loadgen, LoadgenError
from bench.servers import ServerProcess, ServerSpec
from bench.steps import GIVE_UP_MS, Step, describe, make_step

MEMORY_MIN_CLIENTS = 100  # below this, one-time allocations swamp the per-connection cost


@dataclass
class ScenarioResult:
    server: str
    role: str
    transport: str
    clients: int
    payload: int
    sustained_rate: float | None = None  # msg/s, confirmed over the full window
    delivered_per_s: float | None = None  # sustained_rate x clients
    p99_ms: float | None = None  # at the sustained rate
    at_ceiling: bool = False  # sustained at the top of the ladder: the real limit is higher
    memory_per_conn: float | None = None  # bytes of server RSS per idle connection
    connect_s: float | None = None
    steps: list[Step] = field(default_factory=list)
    error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.server}/{self.transport}"


class Search:
    """Walks the rate ladder on one running server."""

    def __init__(self, ctx: Context, server: ServerProcess, res: ScenarioResult) -> None:
        self.ctx = ctx
        self.server = server
        self.res = res
        self.rates = ctx.mode.rates()
        self.loadgen: Loadgen | None = None

    def close(self) -> None:
        if self.loadgen is not None:
            self.loadgen.close()
            self.loadgen = None

    def connect(self, measure_memory: bool) -> Loadgen:
        rss_before = self.server.rss_bytes()
        lg = self.ctx.open_loadgen(self.server, self.res.transport, self.res.clients)
        self.loadgen = lg
        ready = lg.ready()
        if ready["streaming"] < self.res.clients:
            raise LoadgenError(f"only {ready['streaming']}/{self.res.clients} clients connected")
        self.res.connect_s = ready["connect_s"]
        if measure_memory and self.res.clients >= MEMORY_MIN_CLIENTS:
            time.sleep(0.5)
            delta = self.server.rss_bytes() - rss_before
            self.res.memory_per_conn = delta / self.res.clients
        synced = lg.sync()
        if synced["synced"] < self.res.clients:
            raise LoadgenError(f"only {synced['synced']}/{self.res.clients} clients subscribed")
        return lg

    def probe(self, index: int, seconds: float) -> bool:
        lg = self.loadgen or self.connect(measure_memory=False)
        cpu0 = self.server.cpu_seconds()
        rate, mode = self.rates[index], self.ctx.mode
        report = lg.step(rate, seconds, self.res.payload, mode.drain_s, GIVE_UP_MS)
        step = make_step(report, self.server.cpu_seconds() - cpu0)
        self.res.steps.append(step)
        self.ctx.progress.say(f"  {describe(step)}")
        if not step.passed:  # clients may be gone or backlogged: start afresh next time
            self.close()
            time.sleep(1.0)
        return step.passed

    def highest_passing(self, start: int) -> int | None:
        """Probe steps from `start` up to the first failure, or down to the first pass."""
        seconds = self.ctx.mode.probe_s
        if self.probe(start, seconds):
            best = start
            while best + 1 < len(self.rates) and self.probe(best + 1, seconds):
                best += 1
            return best
        for index in range(start - 1, -1, -1):
            if self.probe(index, seconds):
                return index
        return None

    def confirm(self, best: int | None) -> int | None:
        """Hold the best rate for the full window; rungs lower (up to 3) while that fails."""
        mode = self.ctx.mode
        if best is None or mode.window_s <= mode.probe_s:
            return best
        for index in range(best, max(best - 3, -1), -1):
            if self.probe(index, mode.window_s):
                return index
        return None


def start_index(rates: tuple[float, ...], start_rate: float) -> int:
    """The highest ladder rung at or below start_rate (0 if none)."""
    below = [i for i, r in enumerate(rates) if r <= start_rate]
    return below[-1] if below else 0


def run_scenario(
    ctx: Context, spec: ServerSpec, transport: str, clients: int, payload: int, start_rate: float
) -> ScenarioResult:
    res = ScenarioResult(spec.name, spec.role, transport, clients, payload)
    ctx.progress.say(f"{res.key}: {clients} clients, {payload} B payload")
    try:
        with ServerProcess(spec, ctx.server_log(spec.name)) as server:
            server.create_topic(TOPIC)
            search = Search(ctx, server, res)
            try:
                search.connect(measure_memory=True)
                best = search.confirm(search.highest_passing(start_index(search.rates, start_rate)))
            finally:
                search.close()
        record_sustained(res, search.rates, best)
    except (LoadgenError, RuntimeError, OSError) as exc:
        res.error = str(exc)
        ctx.progress.say(f"  error: {exc}")
    return res


def record_sustained(res: ScenarioResult, rates: tuple[float, ...], best: int | None) -> None:
    if best is None:
        return
    rate = rates[best]
    res.sustained_rate = rate
    res.delivered_per_s = rate * res.clients
    res.at_ceiling = best == len(rates) - 1
    passing = [s for s in res.steps if s.passed and s.rate == rate]
    res.p99_ms = passing[-1].p99_ms if passing else None

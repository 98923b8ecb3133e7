"""One stalled client (connects, subscribes, never reads) among fast ones: how do the
fast clients' latency and deliveries change, and what does the server do with it?

Measured in alternating pairs (alone, stalled, alone, stalled, ...) with the stalled
client closed after each stalled step: on a shared 2-core machine one pair of windows
differs by 10-20% from the next with no stall at all, and alternating cancels drift.
The result compares the medians of the per-window p99s."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from bench.context import TOPIC, Context
from bench.loadgen import Loadgen, LoadgenError
from bench.servers import ServerProcess, ServerSpec
from bench.steps import GIVE_UP_MS, Step, describe, make_step

STALL_PAYLOAD = 16_384  # big frames get past the ~4 MB the kernel buffers for one socket


@dataclass
class StallResult:
    server: str
    role: str
    transport: str
    clients: int
    rate: float
    before: list[Step] = field(default_factory=list)  # the fast clients alone, per pair
    during: list[Step] = field(default_factory=list)  # with the stalled client connected
    stalled_closed_by_server: int = 0  # pairs in which the server closed the stalled one
    rss_growth: int | None = None  # largest server RSS change over a stalled step (bytes)
    error: str | None = None

    @property
    def before_p99_ms(self) -> float | None:
        return _median_p99(self.before)

    @property
    def during_p99_ms(self) -> float | None:
        return _median_p99(self.during)

    @property
    def change(self) -> float | None:
        """Relative change of the median p99 (0.1 = 10% slower with the stalled client)."""
        before, during = self.before_p99_ms, self.during_p99_ms
        return None if before is None or during is None else during / before - 1

    @property
    def fast_clients_ok(self) -> bool:
        return bool(self.during) and all(step.passed for step in self.during)


def _median_p99(steps: list[Step]) -> float | None:
    return statistics.median(s.p99_ms for s in steps) if steps else None


def run_stall(ctx: Context, spec: ServerSpec, transport: str) -> StallResult:
    mode = ctx.mode
    res = StallResult(spec.name, spec.role, transport, mode.stall_clients, mode.stall_rate)
    ctx.progress.say(
        f"{spec.name}/{transport}: stalled client among {res.clients} fast ones, "
        f"{mode.stall_pairs} pairs"
    )
    try:
        with ServerProcess(spec, ctx.server_log(spec.name)) as server:
            server.create_topic(TOPIC)
            with ctx.open_loadgen(server, transport, res.clients) as lg:
                lg.ready()
                lg.sync()
                for _ in range(mode.stall_pairs):
                    _pair(ctx, server, lg, res)
    except (LoadgenError, RuntimeError, OSError) as exc:
        res.error = str(exc)
        ctx.progress.say(f"  error: {exc}")
    return res


def _pair(ctx: Context, server: ServerProcess, lg: Loadgen, res: StallResult) -> None:
    """One window alone, then one with a stalled client, which is then closed."""
    res.before.append(_step(ctx, server, lg, "alone  "))
    lg.stall(1)
    time.sleep(0.5)
    rss0 = server.rss_bytes()
    res.during.append(_step(ctx, server, lg, "stalled"))
    res.rss_growth = max(res.rss_growth or 0, server.rss_bytes() - rss0)
    drained = lg.unstall(min(1.0, ctx.mode.stall_s))
    res.stalled_closed_by_server += drained["closed_by_server"] > 0


def _step(ctx: Context, server: ServerProcess, lg: Loadgen, label: str) -> Step:
    mode = ctx.mode
    cpu0 = server.cpu_seconds()
    report = lg.step(mode.stall_rate, mode.stall_s, STALL_PAYLOAD, mode.drain_s, GIVE_UP_MS)
    step = make_step(report, server.cpu_seconds() - cpu0)
    ctx.progress.say(f"  {label} {describe(step)}")
    return step

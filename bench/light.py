"""Light load: ``mode.light_clients`` subscribers at ``mode.light_rate`` msg/s (100 B) for
``mode.light_s`` seconds; publish-to-receive p50/p99 (the anchor: Durable Streams, p99
5.5 ms at 1,000 SSE subscribers x 50 events/s)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.context import TOPIC, Context
from bench.loadgen import LoadgenError
from bench.servers import ServerProcess, ServerSpec
from bench.steps import GIVE_UP_MS, Step, describe, make_step

PAYLOAD = 100


@dataclass
class LightResult:
    server: str
    role: str
    transport: str
    clients: int
    rate: float
    step: Step | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.server}/{self.transport}"


def run_light(ctx: Context, spec: ServerSpec, transport: str) -> LightResult:
    mode = ctx.mode
    res = LightResult(spec.name, spec.role, transport, mode.light_clients, mode.light_rate)
    ctx.progress.say(f"{res.key}: light load, {res.clients} clients at {res.rate:g} msg/s")
    try:
        with ServerProcess(spec, ctx.server_log(spec.name)) as server:
            server.create_topic(TOPIC)
            with ctx.open_loadgen(server, transport, res.clients) as lg:
                ready = lg.ready()
                if ready["streaming"] < res.clients:
                    raise LoadgenError(f"only {ready['streaming']}/{res.clients} connected")
                lg.sync()
                cpu0 = server.cpu_seconds()
                report = lg.step(res.rate, mode.light_s, PAYLOAD, mode.drain_s, GIVE_UP_MS)
                res.step = make_step(report, server.cpu_seconds() - cpu0)
                ctx.progress.say(f"  {describe(res.step)}")
    except (LoadgenError, RuntimeError, OSError) as exc:
        res.error = str(exc)
        ctx.progress.say(f"  error: {exc}")
    return res

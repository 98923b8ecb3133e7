"""One stalled client (connects, subscribes, never reads) among fast ones: how do the
fast clients' latency and deliveries change, and what does the server do with it?"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.context import TOPIC, Context
from bench.loadgen import LoadgenError
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
    before: Step | None = None  # the fast clients alone
    during: Step | None = None  # the same load with the stalled client connected
    stalled_closed_by_server: bool | None = None
    rss_growth: int | None = None  # server RSS change over the stalled step (bytes)
    error: str | None = None


def run_stall(ctx: Context, spec: ServerSpec, transport: str) -> StallResult:
    mode = ctx.mode
    res = StallResult(spec.name, spec.role, transport, mode.stall_clients, mode.stall_rate)
    ctx.progress.say(f"{spec.name}/{transport}: stalled client among {res.clients} fast ones")
    try:
        with ServerProcess(spec, ctx.server_log(spec.name)) as server:
            server.create_topic(TOPIC)
            with ctx.open_loadgen(server, transport, res.clients) as lg:
                lg.ready()
                lg.sync()
                res.before = _step(ctx, server, lg.step)
                lg.stall(1)
                time.sleep(0.5)
                rss0 = server.rss_bytes()
                res.during = _step(ctx, server, lg.step)
                res.rss_growth = server.rss_bytes() - rss0
                drained = lg.unstall(min(2.0, mode.stall_s))
                res.stalled_closed_by_server = drained["closed_by_server"] > 0
    except (LoadgenError, RuntimeError, OSError) as exc:
        res.error = str(exc)
        ctx.progress.say(f"  error: {exc}")
    return res


def _step(ctx: Context, server: ServerProcess, step_fn: object) -> Step:
    mode = ctx.mode
    cpu0 = server.cpu_seconds()
    assert callable(step_fn)
    report = step_fn(mode.stall_rate, mode.stall_s, STALL_PAYLOAD, mode.drain_s, GIVE_UP_MS)
    step = make_step(report, server.cpu_seconds() - cpu0)
    ctx.progress.say(f"  {describe(step)}")
    return step

"""Many SSE clients: ``mode.many_clients`` concurrent SSE subscribers of one topic, each
getting ``mode.many_rate`` msg/s (100 B) for ``mode.many_s`` seconds (the target: 15,000
clients at 1 msg/s, every message delivered, p99 under 100 ms).

The clients are spread over load generator processes of at most
``mode.many_per_process`` each (a process here may hold 20,000 descriptors, and one
epoll thread reading every socket of a burst is itself a latency). Once the server
counts them all (``GET /health``), its RSS and open descriptors against the same server
before they connected give memory and descriptors per connection (fanwire runs with
``FANWIRE_MAX_CONNECTIONS`` raised to the client count: its default is 10,000). Then every process
`listen`s to a step that the first one publishes (one publisher, one stream of
stamped messages: the seqs agree because every process ran the same steps), and their
reports are summed: delivered over expected (published x clients), missed, out of
order, disconnected, and one latency histogram merged from all of them (p50/p99/max).
Server CPU and the load generators' CPU (all processes) over the step show which side
was the limit.

Only fanwire and the C++ reference run it: the asyncio baselines sustained 2-5 msg/s
at 5,000 SSE clients (10,000-25,000 deliveries/s, p99 0.6-0.9 s) in the throughput
scenario, so each 15,000-client burst would take them most of a second, far above the
100 ms target, and holding 15,000 clients would add minutes per baseline to the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench.context import TOPIC, Context
from bench.idle import split, wait_subscribed
from bench.loadgen import Loadgen, LoadgenError, Report
from bench.servers import ServerProcess, ServerSpec
from bench.steps import GIVE_UP_MS, Step, describe, make_step

PAYLOAD = 100
SERVERS = ("fanwire", "refserver")  # see the module docstring for why not the baselines
TARGET_P99_MS = 100.0


@dataclass
class ManyResult:
    server: str
    role: str
    clients: int
    rate: float
    window_s: float
    processes: int = 0  # load generator processes the clients were spread over
    connect_s: float | None = None
    subscribed: int = 0  # subscribers the server counted (GET /health)
    memory_per_conn: float | None = None  # bytes of server RSS per connection
    fds_per_conn: float | None = None
    published: int = 0
    expected: int = 0  # published x clients
    delivered: int = 0  # in-order deliveries of this step's messages, all clients
    out_of_order: int = 0
    # CPU per published message, i.e. per burst to every client (the server's includes
    # the publish request and heartbeats): about the least its max latency can be with a
    # core to itself; a p99 far above it waited for a core
    server_cpu_ms_per_message: float | None = None
    loadgen_cpu_ms_per_message: float | None = None  # all processes
    step: Step | None = None  # the processes' reports summed (latency: merged histogram)
    target_met: bool = False  # every message delivered and p99 under TARGET_P99_MS
    error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.server}/sse"


def merged_percentile(buckets: dict[int, int], p: float, top: int) -> int:
    """The load generator's percentile rule (histogram.hpp) over summed buckets."""
    total = sum(buckets.values())
    if total == 0:
        return 0
    rank = int(p / 100.0 * (total - 1)) + 1
    seen = 0
    for mid in sorted(buckets):
        seen += buckets[mid]
        if seen >= rank:
            return min(mid, top)
    return top


def merge_reports(publisher: Report, listeners: list[Report]) -> Report:
    """One step report for all processes: the publisher's publish figures, everything
    the subscribers saw summed, one latency histogram."""
    reports = [publisher, *listeners]
    buckets: dict[int, int] = {}
    for r in reports:
        for mid, count in r["latency_buckets_us"]:
            buckets[mid] = buckets.get(mid, 0) + count
    top = max(int(r["latency_ms"]["max"] * 1e3) for r in reports)

    def ms(p: float) -> float:
        return merged_percentile(buckets, p, top) / 1e3

    merged: dict[str, Any] = dict(publisher)
    for name in (
        "clients",
        "streaming_at_start",
        "disconnected",
        "complete_clients",
        "received_total",
        "missed_total",
        "out_of_order_total",
    ):
        merged[name] = sum(r[name] for r in reports)
    merged["aborted"] = any(r["aborted"] for r in reports)
    merged["latency_ms"] = {
        "p50": ms(50),
        "p90": ms(90),
        "p99": ms(99),
        "max": top / 1e3,
        "samples": sum(buckets.values()),
    }
    merged["cpu"] = {
        "loadgen_s": sum(r["cpu"]["loadgen_s"] for r in reports),
        "publisher_s": publisher["cpu"]["publisher_s"],
    }
    merged["wall_s"] = max(r["wall_s"] for r in reports)
    return merged


def run_many(ctx: Context, spec: ServerSpec) -> ManyResult:
    mode = ctx.mode
    res = ManyResult(spec.name, spec.role, mode.many_clients, mode.many_rate, mode.many_s)
    ctx.progress.say(
        f"{res.key}: {res.clients:,} clients at {res.rate:g} msg/s each for {res.window_s:g} s"
    )
    pool: list[Loadgen] = []
    # fanwire turns clients beyond FANWIRE_MAX_CONNECTIONS (default 10,000) away with 503
    # LIMIT_REACHED: a deployment for this many sets it, and so does the scenario.
    env = {"FANWIRE_MAX_CONNECTIONS": str(res.clients + 100)} if spec.name == "fanwire" else {}
    try:
        with ServerProcess(spec, ctx.server_log(spec.name), env=env) as server:
            server.create_topic(TOPIC)
            time.sleep(0.5)
            try:
                _connect(ctx, server, res, pool)
                _measure(ctx, server, res, pool)
            finally:
                for lg in pool:
                    lg.close()
    except (LoadgenError, RuntimeError, OSError) as exc:
        res.error = str(exc)
        ctx.progress.say(f"  error: {exc}")
    return res


def _connect(ctx: Context, server: ServerProcess, res: ManyResult, pool: list[Loadgen]) -> None:
    rss0, fds0 = server.rss_bytes(), server.fd_count()
    counts = split(res.clients, ctx.mode.many_per_process)
    res.processes = len(counts)
    started = time.monotonic()
    for n in counts:
        pool.append(ctx.open_loadgen(server, "sse", n))
    streaming = sum(lg.ready()["streaming"] for lg in pool)
    res.connect_s = time.monotonic() - started
    if streaming < res.clients:
        raise LoadgenError(f"only {streaming}/{res.clients} clients connected")
    res.subscribed = wait_subscribed(server, res.clients, 30 + res.clients / 500)
    time.sleep(1.0)  # let allocations settle
    res.memory_per_conn = (server.rss_bytes() - rss0) / res.clients
    res.fds_per_conn = (server.fd_count() - fds0) / res.clients
    # Every process publishes sync markers until its own clients saw one (the others'
    # clients see them too, and ignore them).
    synced = sum(lg.sync(timeout=10 + res.clients / 1000)["synced"] for lg in pool)
    if synced < res.clients:
        raise LoadgenError(f"only {synced}/{res.clients} clients subscribed")
    ctx.progress.say(
        f"  {res.clients:,} connected over {res.processes} load generators in "
        f"{res.connect_s:.1f} s: {res.memory_per_conn:,.0f} B and {res.fds_per_conn:.2f} fds "
        "per connection"
    )


def _measure(ctx: Context, server: ServerProcess, res: ManyResult, pool: list[Loadgen]) -> None:
    mode = ctx.mode
    publisher, listeners = pool[0], pool[1:]
    args = (res.rate, res.window_s, PAYLOAD, mode.drain_s, GIVE_UP_MS)
    first = {lg.listen(*args)["first_seq"] for lg in listeners}
    cpu0 = server.cpu_seconds()
    report = publisher.step(*args)
    listened = [lg.listened(res.window_s, mode.drain_s) for lg in listeners]
    server_cpu_s = server.cpu_seconds() - cpu0
    if first - {report["first_seq"]}:
        raise LoadgenError(f"load generators disagree on the first seq: {first} vs {report}")
    merged = merge_reports(report, listened)
    # server and load generator CPU (all processes summed) over the listeners' span
    res.step = make_step(merged, server_cpu_s)
    res.published = int(report["published"])
    res.expected = res.published * res.clients
    res.delivered = int(merged["received_total"])
    res.out_of_order = int(merged["out_of_order_total"])
    if res.published:
        res.server_cpu_ms_per_message = server_cpu_s / res.published * 1e3
        res.loadgen_cpu_ms_per_message = merged["cpu"]["loadgen_s"] / res.published * 1e3
    res.target_met = (
        res.step.passed and res.delivered == res.expected and res.step.p99_ms < TARGET_P99_MS
    )
    ctx.progress.say(
        f"  {describe(res.step)}; delivered {res.delivered:,}/{res.expected:,}, "
        f"target {'met' if res.target_met else 'NOT met'}"
    )

"""Publish ingest: acknowledged publishes per second, closed loop (the load generator's
``flood``: as fast as the server answers), for ``mode.ingest_s`` seconds, 100 B payloads.

- ``http``: one message per ``POST /topics/bench/messages``, 4 keep-alive connections
  pipelining 64 requests each;
- ``batch``: ``{"messages": [...]}`` of 100 messages per POST, 2 connections x 4 in flight;
- ``ws``: one WebSocket, 256 ``publish`` messages in flight (each acked).

Each with 0 and with ``mode.ingest_subscribers`` SSE subscribers attached (fresh ones
per measurement). fanwire's subscribers ask for ``policy=drop_oldest``, so they stay
attached and the server fans every publish out to all of them, dropping what a client
cannot take (under the default ``disconnect`` they are all cut off within the first
second of a flood, and the rest would be measured with none); the baselines drop or
disconnect as they do. How many were cut off, and what they received, is reported.
fanwire runs again in Redis mode (a ``redis-server`` on a free port). The baselines and the C++
reference only have ``http``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.context import TOPIC, Context
from bench.loadgen import LoadgenError
from bench.servers import ServerProcess, ServerSpec

PAYLOAD = 100
# kind -> (connections, requests in flight per connection, messages per request)
KINDS: dict[str, tuple[int, int, int]] = {
    "http": (4, 64, 1),
    "batch": (2, 4, 100),
    "ws": (1, 256, 1),
}


@dataclass
class IngestResult:
    server: str
    role: str
    backend: str  # "memory" or "redis"
    kind: str
    subscribers: int
    acked_per_s: float | None = None
    failed: int = 0
    delivered_per_s: float | None = None  # messages the subscribers received, per second
    disconnected: int = 0  # subscribers the server cut off (slow) during the flood
    p50_ms: float | None = None
    p99_ms: float | None = None
    server_cpu: float | None = None
    loadgen_cpu: float | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        backend = "" if self.backend == "memory" else f"+{self.backend}"
        return f"{self.server}{backend}/{self.kind}"


def kinds_of(spec: ServerSpec) -> tuple[str, ...]:
    return tuple(KINDS) if spec.name == "fanwire" else ("http",)


@contextmanager
def redis_url() -> Iterator[str]:
    from fanwire.testing.servers import RedisServer

    redis = RedisServer(log_dir=Path(tempfile.mkdtemp(prefix="fanwire-bench-redis-"))).start()
    try:
        yield redis.url
    finally:
        redis.stop()


def _create_topic(server: ServerProcess, timeout: float = 15) -> None:
    """Redis mode answers 503 until the server connected to Redis."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            server.create_topic(TOPIC)
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def run_ingest(ctx: Context, spec: ServerSpec, backend: str) -> list[IngestResult]:
    kinds = kinds_of(spec)
    results = [
        IngestResult(spec.name, spec.role, backend, kind, subs)
        for subs in ctx.mode.ingest_subscribers
        for kind in kinds
    ]
    ctx.progress.say(f"{spec.name} ({backend}): publish ingest, {', '.join(kinds)}")
    try:
        with (
            _backend_env(backend) as env,
            ServerProcess(spec, ctx.server_log(spec.name), env=env) as server,
        ):
            _create_topic(server)
            for res in results:
                _flood(ctx, server, res)
    except (LoadgenError, RuntimeError, OSError) as exc:
        for res in results:
            res.error = res.error or str(exc)
        ctx.progress.say(f"  error: {exc}")
    return results


@contextmanager
def _backend_env(backend: str) -> Iterator[dict[str, str]]:
    if backend == "memory":
        yield {}
        return
    with redis_url() as url:
        yield {"FANWIRE_REDIS_URL": url}


def _flood(ctx: Context, server: ServerProcess, res: IngestResult) -> None:
    conns, window, batch = KINDS[res.kind]
    try:
        path = f"/stream?topic={TOPIC}&policy=drop_oldest" if res.server == "fanwire" else None
        with ctx.open_loadgen(server, "sse", res.subscribers, sse_path=path) as lg:
            ready = lg.ready()
            if ready["streaming"] < res.subscribers:
                raise LoadgenError(f"only {ready['streaming']}/{res.subscribers} connected")
            lg.sync()
            cpu0 = server.cpu_seconds()
            r: dict[str, Any] = lg.flood(ctx.mode.ingest_s, PAYLOAD, res.kind, conns, window, batch)
            server_cpu = server.cpu_seconds() - cpu0
        wall = max(r["wall_s"], 1e-9)
        res.acked_per_s = r["acked_per_s"]
        res.failed = r["failed"]
        res.disconnected = r["disconnected"]
        res.delivered_per_s = r["delivered_total"] / wall if res.subscribers else None
        if r["latency_ms"]["samples"]:
            res.p50_ms, res.p99_ms = r["latency_ms"]["p50"], r["latency_ms"]["p99"]
        res.server_cpu = server_cpu / wall
        res.loadgen_cpu = r["loadgen_s"] / wall
        if r["connection_lost"]:
            res.error = "the publish connection was lost"
        ctx.progress.say(
            f"  {res.key} with {res.subscribers} subscribers: {res.acked_per_s:,.0f} acked/s, "
            f"{res.failed} failed, {res.disconnected} disconnected, server cpu "
            f"{res.server_cpu:.0%}, loadgen cpu {res.loadgen_cpu:.0%}"
        )
    except (LoadgenError, OSError) as exc:
        res.error = str(exc)
        ctx.progress.say(f"  {res.key} with {res.subscribers} subscribers: error: {exc}")

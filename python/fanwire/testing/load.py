"""A load helper: many SSE/WebSocket subscribers, one paced publisher, delivery stats.

:func:`run_load` opens the connections with asyncio (httpx + httpx-sse, websockets),
publishes over HTTP at ``rate`` messages/s for ``duration`` s, waits up to ``drain`` s for
deliveries to finish, and returns a :class:`LoadResult`. It reports what happened; the
caller asserts on behaviour (every client got everything, in order), never on speed.

Native load generator hook: with ``native=True`` (or ``native=None`` and a binary found
by :func:`find_loadgen`), the run is delegated to ``bench/loadgen``, called as::

    loadgen --url URL --topic T --sse N --ws M --rate R --duration D \
            --drain S --payload-bytes B --json

which must print one JSON object with the fields of :class:`LoadResult` (missing fields
keep their defaults). Set ``FANWIRE_LOADGEN=/path/to/loadgen`` to point at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx
import orjson
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from .ws_client import _HAS_PROXY_OPTION


@dataclass
class LoadResult:
    """What a load run delivered. Latencies are seconds, publish call to client receipt."""

    sse_clients: int = 0
    ws_clients: int = 0
    connected: int = 0
    published: int = 0
    published_ids: list[str] = field(default_factory=list)
    duration: float = 0.0
    delivered: int = 0
    per_client_delivered: list[int] = field(default_factory=list)
    per_client_lag: list[int] = field(default_factory=list)
    per_client_in_order: list[bool] = field(default_factory=list)
    latency: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    native: bool = False

    @property
    def expected(self) -> int:
        """Deliveries if every connected client got every message."""
        return self.published * self.connected

    @property
    def max_lag(self) -> int:
        """The most messages any client was missing at the end."""
        return max(self.per_client_lag, default=0)


def percentiles(samples: list[float], points: tuple[float, ...] = (50, 90, 99)) -> dict[str, float]:
    """``{"p50": ..., "p90": ..., "p99": ..., "max": ...}`` of ``samples`` (nearest rank)."""
    if not samples:
        return {}
    ordered = sorted(samples)
    out = {f"p{p:g}": ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] for p in points}
    out["max"] = ordered[-1]
    return out


def find_loadgen() -> Path | None:
    """The native load generator: ``$FANWIRE_LOADGEN``, else ``bench/loadgen`` above cwd."""
    configured = os.environ.get("FANWIRE_LOADGEN")
    if configured:
        return Path(configured)
    for directory in [Path.cwd(), *Path.cwd().parents]:
        candidate = directory / "bench" / "loadgen"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("fanwire-loadgen")
    return Path(found) if found else None


@dataclass
class _Client:
    received: int = 0
    last_seq: int = -1
    in_order: bool = True
    latencies: list[float] = field(default_factory=list)

    def got(self, payload: Any) -> None:
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict) or "seq" not in data:
            return
        self.received += 1
        self.latencies.append(time.time() - data["t"])
        if data["seq"] <= self.last_seq:
            self.in_order = False
        self.last_seq = data["seq"]


async def _sse_client(
    http: httpx.AsyncClient,
    url: str,
    topic: str,
    client: _Client,
    ready: asyncio.Event,
    errors: list[str],
) -> None:
    try:
        async with aconnect_sse(http, "GET", url + "/stream", params={"topic": topic}) as source:
            source.response.raise_for_status()
            ready.set()
            async for sse in source.aiter_sse():
                if sse.data and sse.event not in ("heartbeat", "gap", "retry"):
                    client.got(orjson.loads(sse.data))
    except (httpx.HTTPError, OSError) as error:
        errors.append(f"sse: {error!r}")
    finally:
        ready.set()


async def _ws_client(
    url: str, topic: str, client: _Client, ready: asyncio.Event, errors: list[str]
) -> None:
    ws_url = url.replace("http://", "ws://", 1) + "/ws"
    options: dict[str, Any] = {"ping_interval": None, "max_size": None, "compression": None}
    if _HAS_PROXY_OPTION:
        options["proxy"] = None
    try:
        async with connect(ws_url, **options) as ws:
            request = {"type": "subscribe", "topic": topic, "request_id": "s"}
            await ws.send(orjson.dumps(request).decode())
            async for text in ws:
                message = orjson.loads(text)
                kind = message.get("type")
                if kind == "ack" and message.get("request_id") == "s":
                    ready.set()
                elif kind == "error":
                    errors.append(f"ws: {message}")
                    ready.set()
                elif kind == "event":
                    client.got(message)
    except Exception as error:  # websockets raises several unrelated types
        errors.append(f"ws: {error!r}")
    finally:
        ready.set()


async def run_load(
    base_url: str,
    *,
    topic: str = "loadtest",
    sse_clients: int = 0,
    ws_clients: int = 0,
    rate: float = 100.0,
    duration: float = 2.0,
    drain: float = 5.0,
    payload_bytes: int = 64,
    create_topic: bool = True,
    connect_timeout: float = 30.0,
    native: bool | None = False,
) -> LoadResult:
    """Run a bounded load against a running server at ``base_url``; see the module doc."""
    loadgen = find_loadgen() if native is not False else None
    if native and loadgen is None:
        raise FileNotFoundError("native load generator not found (bench/loadgen)")
    if loadgen is not None:
        return run_native(
            loadgen, base_url, topic=topic, sse_clients=sse_clients, ws_clients=ws_clients,
            rate=rate, duration=duration, drain=drain, payload_bytes=payload_bytes,
        )  # fmt: skip
    result = LoadResult(sse_clients=sse_clients, ws_clients=ws_clients)
    base_url = base_url.rstrip("/")
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(connect_timeout, read=None)
    clients = [_Client() for _ in range(sse_clients + ws_clients)]
    readies = [asyncio.Event() for _ in clients]
    async with (
        httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as http,
        httpx.AsyncClient(timeout=10.0, trust_env=False) as publisher,
    ):
        if create_topic:
            await publisher.post(base_url + "/topics", json={"name": topic})
        tasks = [
            asyncio.create_task(
                _sse_client(http, base_url, topic, c, r, result.errors)
                if i < sse_clients
                else _ws_client(base_url, topic, c, r, result.errors)
            )
            for i, (c, r) in enumerate(zip(clients, readies, strict=True))
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), connect_timeout)
            result.connected = sum(not t.done() for t in tasks)
            pad = "x" * max(0, payload_bytes - 40)
            url = f"{base_url}/topics/{topic}/messages"
            start = time.monotonic()
            count = int(rate * duration)
            for seq in range(count):
                delay = start + seq / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                body = {"data": {"seq": seq, "t": time.time(), "pad": pad}}
                response = await publisher.post(url, json=body)
                if response.status_code != 202:
                    result.errors.append(f"publish {seq}: {response.status_code} {response.text}")
                    continue
                result.published_ids.append(response.json()["message_id"])
            result.published = len(result.published_ids)
            result.duration = time.monotonic() - start
            deadline = time.monotonic() + drain
            while time.monotonic() < deadline and any(
                c.received < result.published
                for c, t in zip(clients, tasks, strict=True)
                if not t.done()
            ):
                await asyncio.sleep(0.05)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    result.per_client_delivered = [c.received for c in clients]
    result.per_client_lag = [result.published - c.received for c in clients]
    result.per_client_in_order = [c.in_order for c in clients]
    result.delivered = sum(result.per_client_delivered)
    result.latency = percentiles([x for c in clients for x in c.latencies])
    return result


def run_native(
    binary: Path,
    base_url: str,
    *,
    topic: str,
    sse_clients: int,
    ws_clients: int,
    rate: float,
    duration: float,
    drain: float,
    payload_bytes: int,
) -> LoadResult:
    """Delegate to the native load generator (contract in the module doc)."""
    command = [
        str(binary), "--url", base_url, "--topic", topic,
        "--sse", str(sse_clients), "--ws", str(ws_clients), "--rate", str(rate),
        "--duration", str(duration), "--drain", str(drain),
        "--payload-bytes", str(payload_bytes), "--json",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + drain + 120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command} exited {done.returncode}: {done.stderr[-4000:]}")
    report = orjson.loads(done.stdout)
    known = {f.name for f in fields(LoadResult)}
    result = LoadResult(**{k: v for k, v in report.items() if k in known})
    result.native = True
    return result


def run_load_sync(base_url: str, **options: Any) -> LoadResult:
    """:func:`run_load` from synchronous code (a plain test function)."""
    return asyncio.run(run_load(base_url, **options))

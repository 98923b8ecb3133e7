"""A load helper: many SSE/WebSocket subscribers, one paced publisher, delivery stats.

:func:`run_load` opens the connections with fanwire.testing's own clients
(:class:`~fanwire.testing.sse_client.SSEClient` on httpx + httpx-sse,
:class:`~fanwire.testing.ws_client.WSClient` on websockets, storing nothing), publishes
over HTTP at ``rate`` messages/s for ``duration`` s, waits up to ``drain`` s for
deliveries to finish, and returns a :class:`LoadResult`. It reports what happened; the
caller asserts on behaviour (every client got everything, in order), never on speed.

Native load generator: with ``native=True`` (or ``native=None`` and a binary found by
:func:`find_loadgen`), the run is delegated to the C++ load generator of ``bench/loadgen``
(see :func:`run_native`); build it with ``python -c "from bench.tools import
build_loadgen; build_loadgen()"`` from a source checkout (it lands in
``bench/build/loadgen``), or point ``FANWIRE_LOADGEN`` at a binary.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from .connection import StallableClient
from .sse_client import SSEClient, SSEFrame
from .ws_client import WSClient


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
    #: Receipts ``latency`` was computed from (one per message a client got; 0 from the
    #: native load generator, which reports only the percentiles).
    latency_samples: int = 0
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
    """The native load generator binary.

    ``$FANWIRE_LOADGEN``, else ``bench/build/loadgen`` in the current directory or one
    above it (a source checkout), else ``fanwire-loadgen`` on ``PATH``; None if none.
    """
    configured = os.environ.get("FANWIRE_LOADGEN")
    if configured:
        return Path(configured)
    for directory in [Path.cwd(), *Path.cwd().parents]:
        candidate = directory / "bench" / "build" / "loadgen"
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


def _sse_client(url: str, topic: str, client: _Client) -> SSEClient:
    def frame(sse: SSEFrame) -> None:
        if sse.is_message:
            client.got(sse.data)

    return SSEClient(url, topics=[topic], on_message=frame, keep=False)


def _ws_client(url: str, client: _Client) -> WSClient:
    def message(ws: dict[str, Any]) -> None:
        if ws.get("type") == "event":
            client.got(ws)

    return WSClient(url.replace("http", "ws", 1) + "/ws", on_message=message)


async def _follow(
    connection: StallableClient, topic: str, ready: asyncio.Event, errors: list[str]
) -> None:
    """Connect (and subscribe), then keep the connection open until cancelled."""
    kind = "ws" if isinstance(connection, WSClient) else "sse"
    try:
        async with connection:
            if isinstance(connection, WSClient):
                await connection.subscribe(topic)
                connection.keep = False  # from now on only the callback counts
            ready.set()
            await connection.until_ended()
    except (AssertionError, TimeoutError, httpx.HTTPError, OSError) as error:
        errors.append(f"{kind}: {error!r}")
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
    clients = [_Client() for _ in range(sse_clients + ws_clients)]
    readies = [asyncio.Event() for _ in clients]
    connections = [
        _sse_client(base_url, topic, c) if i < sse_clients else _ws_client(base_url, c)
        for i, c in enumerate(clients)
    ]
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as publisher:
        if create_topic:
            await publisher.post(base_url + "/topics", json={"name": topic})
        tasks = [
            asyncio.create_task(_follow(connection, topic, ready, result.errors))
            for connection, ready in zip(connections, readies, strict=True)
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
    latencies = [x for c in clients for x in c.latencies]
    result.latency = percentiles(latencies)
    result.latency_samples = len(latencies)
    return result


class _NativeFleet:
    """One ``loadgen`` process: N subscribers of one transport, and its publisher.

    The loadgen (``bench/loadgen/main.cpp``) takes ``--port P --transport sse|ws
    --clients N --topic T --connect-timeout S --max-seconds S``, reads one command per
    line on stdin (``sync <timeout>``, ``step <rate> <secs> <payload_bytes> <drain>``,
    ``quit``) and answers each with one JSON line on stdout (first ``{"type":
    "ready"}`` once its clients are connected).
    """

    def __init__(
        self, binary: Path, port: int, transport: str, clients: int, topic: str, bound: float
    ) -> None:
        command = [
            str(binary), "--port", str(port), "--transport", transport,
            "--clients", str(clients), "--topic", topic,
            "--connect-timeout", str(30 + clients / 100), "--max-seconds", str(bound),
        ]  # fmt: skip
        self.transport = transport
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._buffer = b""

    def send(self, line: str) -> None:
        """Send one command line."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def answer(self, kind: str, timeout: float) -> dict[str, Any]:
        """The next JSON answer of type ``kind`` (an ``error`` answer raises)."""
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                while b"\n" not in self._buffer:
                    left = deadline - time.monotonic()
                    if left <= 0 or not selector.select(left):
                        raise TimeoutError(f"loadgen ({self.transport}) gave no {kind!r} answer")
                    chunk = os.read(fd, 1 << 20)
                    if not chunk:
                        raise RuntimeError(
                            f"loadgen ({self.transport}) exited with {self.proc.wait()}: "
                            f"{self.stderr()}"
                        )
                    self._buffer += chunk
                line, self._buffer = self._buffer.split(b"\n", 1)
                report: dict[str, Any] = orjson.loads(line)
                if report.get("type") == "error":
                    raise RuntimeError(f"loadgen ({self.transport}): {report.get('message')}")
                if report.get("type") == kind:
                    return report

    def stderr(self) -> str:
        """What the process wrote on stderr (once it has exited)."""
        if self.proc.stderr is None or self.proc.poll() is None:
            return ""
        return self.proc.stderr.read().decode(errors="replace")[-4000:]

    def close(self) -> None:
        """Ask it to quit; kill it if it does not."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.send("quit")
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


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
    """Run the load with the native load generator (``bench/loadgen``).

    One loadgen process holds one transport's clients and publishes to their topic, so
    with both transports there are two fleets, each on its own topic (``{topic}.sse``,
    ``{topic}.ws``, created here) with its own publisher at ``rate``: every client is
    expected to get ``rate * duration`` messages, and the server sees both publishers.
    The loadgen counts, per client, the messages received in order (a duplicate or an
    older one is counted apart), so a client that received them all got them in order;
    it reports no message ids (``published_ids`` stays empty).
    """
    parts = urlsplit(base_url)
    port = parts.port or 80
    wanted = [(t, n) for t, n in (("sse", sse_clients), ("ws", ws_clients)) if n > 0]
    bound = 120 + duration + drain + (sse_clients + ws_clients) / 50
    result = LoadResult(sse_clients=sse_clients, ws_clients=ws_clients, native=True)
    fleets: list[_NativeFleet] = []
    try:
        with httpx.Client(base_url=base_url, timeout=10.0, trust_env=False) as http:
            for transport, _ in wanted:
                response = http.post("/topics", json={"name": f"{topic}.{transport}"})
                if response.status_code != 201:
                    raise RuntimeError(f"creating {topic}.{transport}: {response.text}")
        for transport, clients in wanted:
            fleets.append(
                _NativeFleet(binary, port, transport, clients, f"{topic}.{transport}", bound)
            )
        for fleet in fleets:
            ready = fleet.answer("ready", 60 + (sse_clients + ws_clients) / 50)
            result.connected += int(ready["streaming"])
            if ready["failed"]:
                result.errors.append(f"{fleet.transport}: {ready['failed']} clients not connected")
        for fleet in fleets:  # every subscription is live before the measured step
            fleet.send("sync 10")
        for fleet in fleets:
            fleet.answer("sync", 30)
        for fleet in fleets:
            fleet.send(f"step {rate} {duration} {payload_bytes} {drain}")
        steps = [fleet.answer("step", duration + drain + 60) for fleet in fleets]
    finally:
        for fleet in fleets:
            fleet.close()
    result.published = min(int(step["publish_ok"]) for step in steps) if steps else 0
    result.duration = max((float(step["wall_s"]) for step in steps), default=0.0)
    samples: dict[str, float] = {}
    for fleet, step in zip(fleets, steps, strict=True):
        received = [int(n) for n in step["per_client_received"]]
        in_order = int(step["out_of_order_total"]) == 0
        result.per_client_delivered += received
        result.per_client_lag += [int(step["publish_ok"]) - n for n in received]
        result.per_client_in_order += [in_order] * len(received)
        if not in_order:
            result.errors.append(
                f"{fleet.transport}: {step['out_of_order_total']} duplicate or reordered"
            )
        if step["publish_failed"] or step["publish_connection_lost"]:
            result.errors.append(f"{fleet.transport}: publisher: {step['publish_failed']} failed")
        if step["disconnected"]:
            result.errors.append(f"{fleet.transport}: {step['disconnected']} clients disconnected")
        for key in ("p50", "p90", "p99", "max"):  # the worst fleet's, in seconds
            samples[key] = max(samples.get(key, 0.0), float(step["latency_ms"][key]) / 1e3)
    result.delivered = sum(result.per_client_delivered)
    result.latency = samples
    return result


def run_load_sync(base_url: str, **options: Any) -> LoadResult:
    """:func:`run_load` from synchronous code (a plain test function)."""
    return asyncio.run(run_load(base_url, **options))

"""A high-level stress helper: many SSE and WebSocket clients, stalled ones, one publisher.

:func:`stress` connects ``sse_clients`` + ``ws_clients`` subscribers of one topic to a
running server (fanwire's own, or any FastAPI app that mounts ``fanwire.router``), plus
``stalled`` clients of each transport that subscribe and then never read. It publishes
``messages`` messages in order, each carrying its sequence number (``seq``), waits until
every reading client has them all (or ``drain`` seconds pass), and returns a
:class:`StressReport`::

    report = stress(server, sse_clients=500, ws_clients=500, messages=1000, stalled=1)
    report.assert_all_delivered_in_order()
    report.assert_stalled_did_not_hurt()

It checks behaviour, never speed: every reading client must get every message exactly
once and in publish order while the stalled clients' sockets are full; durations are in
the report only to read.

The clients are lean asyncio protocols (a small HTTP/1.1 SSE reader and an RFC 6455
WebSocket client) that parse each frame once with orjson, so one process can hold a
thousand connections and still read them faster than a server on the same machine
writes them. A stalled client sets a small socket receive buffer and stops reading once
subscribed; it asks for ``policy=drop_oldest`` and a small queue so the server keeps it
connected and drops for it (announcing the drops), and before publishing starts it is
jammed: a private topic only it subscribes to is flooded until the server reports drops
for it, so its socket is provably full while the measured messages flow.

Publishing goes through fanwire's REST endpoint (``POST /topics/{topic}/messages``) by
default, or through the app's own route: ``publish=lambda seq: ("/quotes", {..., "seq":
seq})`` posts that JSON body to that path, and the app must carry ``seq`` into the
published ``data`` (at ``data[seq_key]``). Messages on the topic without that key (e.g.
from the app's own background tasks) are counted but otherwise ignored.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

import httpx
import orjson

#: A publish function: ``seq -> (path, json_body)`` posted to the server under test.
PublishFn = Callable[[int], tuple[str, Any]]

_STALLED_RCVBUF = 4096
_STALLED_QUEUE = 8
_FLOOD_PAYLOAD = 32_000
_FLOOD_MAX_BYTES = 64 * 1024 * 1024


class _Server(Protocol):
    """Anything with a base HTTP ``url`` (a :class:`~fanwire.testing.servers.FanwireServer`)."""

    @property
    def url(self) -> str:
        """Base URL, ``http://host:port``."""
        ...


# -- per-client bookkeeping -----------------------------------------------------------------


@dataclass
class ClientResult:
    """What one client saw. ``received`` counts messages carrying a ``seq``."""

    kind: str
    index: int
    stalled: bool = False
    connected: bool = False
    received: int = 0
    other_messages: int = 0
    next_seq: int = 0
    problem: str | None = None
    notices: list[Any] = field(default_factory=list)
    closed: bool = False
    close_reason: str | None = None

    @property
    def name(self) -> str:
        """``sse#3``, ``ws#0 (stalled)``..."""
        return f"{self.kind}#{self.index}" + (" (stalled)" if self.stalled else "")

    def got(self, data: Any, seq_key: str) -> None:
        """Record one delivered message's ``data``; check its seq is the next one."""
        seq = data.get(seq_key) if isinstance(data, dict) else None
        if not isinstance(seq, int):
            self.other_messages += 1
            return
        self.received += 1
        if self.problem is not None:
            return
        if seq != self.next_seq:
            what = "a duplicate or older one" if seq < self.next_seq else "skipping some"
            self.problem = (
                f"got seq {seq} where {self.next_seq} was due ({what}), after "
                f"{self.received - 1} in order"
            )
            return
        self.next_seq = seq + 1

    def notice(self, kind: str, body: Any) -> None:
        """Record a notice from the server (gap, drop, error, shutdown...)."""
        self.notices.append({"kind": kind, "body": body})


class _Conn(asyncio.Protocol):
    """Shared plumbing of the two lean clients."""

    def __init__(self, result: ClientResult, seq_key: str) -> None:
        self.result = result
        self.seq_key = seq_key
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.ready = asyncio.get_running_loop().create_future()
        self.done = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport and send the request."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request())

    def request(self) -> bytes:
        """The bytes to send first."""
        raise NotImplementedError

    def connection_lost(self, exc: Exception | None) -> None:
        """Mark the client closed (and not ready, if it never was)."""
        self.result.closed = True
        if self.result.close_reason is None:
            self.result.close_reason = repr(exc) if exc else "closed by the server"
        self._fail("connection closed before it was ready")
        self.done.set()

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"{self.result.name}: {why}"))
            self.ready.exception()  # mark retrieved: the caller may be gone already

    def _ready(self) -> None:
        if not self.ready.done():
            self.result.connected = True
            self.ready.set_result(None)

    def stall(self) -> None:
        """Stop reading: data backs up in the socket, then in the server."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def unstall(self) -> None:
        """Read again."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self) -> None:
        """Drop the connection."""
        if not self.result.closed and self.result.close_reason is None:
            self.result.close_reason = "closed by the test"
        if self.transport is not None:
            self.transport.abort()


def _split_head(buffer: bytearray) -> tuple[int, dict[str, str], bytes] | None:
    """Parse an HTTP response head off ``buffer``: (status, headers, rest) or None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, bytes(buffer[end + 4 :])


class _SSEConn(_Conn):
    """``GET /stream`` over raw HTTP/1.1; parses frames, follows chunked encoding."""

    def __init__(self, result: ClientResult, seq_key: str, host: str, target: str) -> None:
        super().__init__(result, seq_key)
        self.host = host
        self.target = target
        self.head_done = False
        self.chunked = False
        self.raw = bytearray()  # chunked body not yet decoded
        self.body = bytearray()  # decoded body not yet split into frames
        self.status: int | None = None

    def request(self) -> bytes:
        """The GET request."""
        return (
            f"GET {self.target} HTTP/1.1\r\nHost: {self.host}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-store\r\n\r\n"
        ).encode()

    def data_received(self, data: bytes) -> None:
        """Decode the body and dispatch complete frames."""
        if not self.head_done:
            self.buffer += data
            head = _split_head(self.buffer)
            if head is None:
                return
            self.status, headers, data = head
            self.head_done = True
            self.buffer = bytearray()
            if self.status != 200:
                self.result.close_reason = f"HTTP {self.status}"
                self._fail(f"GET {self.target} answered {self.status}")
                self.close()
                return
            self.chunked = "chunked" in headers.get("transfer-encoding", "")
        if self.chunked:
            self.raw += data
            self._dechunk()
        else:
            self.body += data
        self._frames()
        if self.done.is_set() and self.transport is not None:
            self.transport.close()

    def _dechunk(self) -> None:
        raw = self.raw
        pos = 0
        while True:
            line_end = raw.find(b"\r\n", pos)
            if line_end < 0:
                break
            size = int(bytes(raw[pos:line_end]).split(b";", 1)[0], 16)
            if size == 0:  # the server ended the stream (the connection may stay open)
                self.result.close_reason = self.result.close_reason or "stream ended by the server"
                self.done.set()
                pos = len(raw)
                break
            start = line_end + 2
            if len(raw) < start + size + 2:
                break
            self.body += raw[start : start + size]
            pos = start + size + 2
        del raw[:pos]

    def _frames(self) -> None:
        body = self.body
        end = body.rfind(b"\n\n")
        if end < 0:
            return
        complete = bytes(body[:end])
        del body[: end + 2]
        self._ready()  # the stream started (its first frame is `retry:`)
        seq_key = self.seq_key
        result = self.result
        for frame in complete.split(b"\n\n"):
            event = b"message"
            data = None
            for line in frame.split(b"\n"):
                if line.startswith(b"data: "):
                    data = line[6:]
                elif line.startswith(b"event: "):
                    event = line[7:]
            if data is None:
                continue
            if event in (b"heartbeat",):
                continue
            payload = orjson.loads(data)
            if event in (b"gap", b"error", b"shutdown", b"topic_deleted"):
                result.notice(event.decode(), payload)
            elif isinstance(payload, dict):
                result.got(payload.get("data"), seq_key)


_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _ws_frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 section 5.2)."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    if length:
        key = int.from_bytes((mask * (length // 4 + 1))[:length], "big")
        masked = (int.from_bytes(payload, "big") ^ key).to_bytes(length, "big")
    else:
        masked = b""
    return head + mask + masked


class _WSConn(_Conn):
    """A WebSocket client of ``/ws``: handshake, subscribe, read events; answers pings."""

    def __init__(
        self,
        result: ClientResult,
        seq_key: str,
        host: str,
        path: str,
        subscribes: list[dict[str, Any]],
    ) -> None:
        super().__init__(result, seq_key)
        self.host = host
        self.path = path
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.head_done = False
        self.subscribes = subscribes
        self.acks = 0
        self.fragments = bytearray()

    def request(self) -> bytes:
        """The upgrade request (no compression offered)."""
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

    def send_json(self, message: Any) -> None:
        """Send one JSON text message."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_ws_frame(0x1, orjson.dumps(message)))

    def data_received(self, data: bytes) -> None:
        """Parse frames; dispatch complete messages."""
        self.buffer += data
        if not self.head_done:
            head = _split_head(self.buffer)
            if head is None:
                return
            status, _headers, rest = head
            self.head_done = True
            self.buffer = bytearray(rest)
            if status != 101:
                self.result.close_reason = f"HTTP {status}"
                self._fail(f"handshake answered {status}")
                self.close()
                return
        buffer = self.buffer
        pos = 0
        size = len(buffer)
        while size - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                start = pos + 10
            if size < start + length:
                break
            payload = bytes(buffer[start : start + length])
            pos = start + length
            self._frame(first & 0x80, first & 0x0F, payload)
        del buffer[:pos]

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode == 0x9:  # ping
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(_ws_frame(0xA, payload))
            return
        if opcode == 0x8:  # close
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.result.close_reason = f"close {code} {payload[2:].decode(errors='replace')}"
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(_ws_frame(0x8, payload[:2]))
                self.transport.close()
            return
        if opcode == 0xA:
            return
        if opcode in (0x1, 0x2, 0x0):
            if not fin:
                self.fragments += payload
                return
            if self.fragments:
                payload = bytes(self.fragments) + payload
                self.fragments = bytearray()
            self._message(orjson.loads(payload))

    def _message(self, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "event":
            self.result.got(message.get("data"), self.seq_key)
        elif kind == "info" and message.get("message") == "connected":
            for request in self.subscribes:
                self.send_json(request)
        elif kind == "ack" and message.get("request_type") == "subscribe":
            self.acks += 1
            if self.acks == len(self.subscribes):
                self._ready()
        elif kind == "error":
            self.result.notice("error", message)
            self._fail(f"server answered {message}")
        elif kind == "info" and message.get("message") != "heartbeat":
            self.result.notice(str(message.get("message")), message)


# -- the report ------------------------------------------------------------------------------


@dataclass
class StressReport:
    """What :func:`stress` saw: per-client results, the publisher's, the server's drops."""

    topic: str
    messages: int
    published: int = 0
    publish_errors: list[str] = field(default_factory=list)
    clients: list[ClientResult] = field(default_factory=list)
    stalled: list[ClientResult] = field(default_factory=list)
    #: Messages the server dropped on ``topic`` while publishing (from ``GET /stats``):
    #: only stalled clients should have any.
    dropped_during_run: int = 0
    #: Whether each stalled client's socket was full before publishing started.
    stalled_jammed: bool = False
    connect_seconds: float = 0.0
    publish_seconds: float = 0.0
    drain_seconds: float = 0.0

    @property
    def delivered(self) -> int:
        """Messages (with a seq) received by the reading clients, all together."""
        return sum(c.received for c in self.clients)

    @property
    def expected(self) -> int:
        """``messages`` times the number of reading clients."""
        return self.messages * len(self.clients)

    def summary(self) -> str:
        """One line to print: counts and durations (informative only)."""
        sse = sum(c.kind == "sse" for c in self.clients)
        ws = len(self.clients) - sse
        incomplete = sum(c.received != self.messages or c.problem is not None for c in self.clients)
        return (
            f"{sse} SSE + {ws} WS clients (+{len(self.stalled)} stalled), "
            f"{self.published}/{self.messages} published on {self.topic!r}, "
            f"{self.delivered}/{self.expected} delivered, {incomplete} client(s) incomplete, "
            f"{self.dropped_during_run} dropped for stalled clients; connect "
            f"{self.connect_seconds:.1f}s, publish {self.publish_seconds:.1f}s, drain "
            f"{self.drain_seconds:.1f}s"
        )

    def assert_all_delivered_in_order(self) -> None:
        """Every message was published, and every reading client got each once, in order."""
        problems = [f"publish: {e}" for e in self.publish_errors[:5]]
        if self.published != self.messages:
            problems.append(f"only {self.published} of {self.messages} messages were published")
        if not self.clients:
            problems.append("no reading client")
        for client in self.clients:
            if client.problem is not None:
                problems.append(f"{client.name}: {client.problem}")
            elif client.received != self.messages:
                problems.append(
                    f"{client.name}: received {client.received} of {self.messages} "
                    f"(closed: {client.close_reason if client.closed else 'no'}; "
                    f"notices: {client.notices[:3]})"
                )
        if problems:
            shown = "\n  ".join(problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise AssertionError(f"{self.summary()}\n  {shown}{more}")

    def assert_stalled_did_not_hurt(self) -> None:
        """The stalled clients really were stuck, and every other client still got it all.

        Stuck means: each stalled client's socket was full before publishing started, the
        server dropped messages on the topic for them while publishing, and once they
        read again each was told of its drops (a ``gap`` / ``messages_dropped`` notice).
        """
        problems: list[str] = []
        if not self.stalled:
            problems.append("no stalled client (pass stalled=1 or more)")
        if not self.stalled_jammed:
            problems.append("the stalled clients' sockets never filled up before publishing")
        if self.dropped_during_run == 0:
            problems.append(
                f"the server dropped nothing on {self.topic!r} while publishing, so the "
                "stalled clients never fell behind"
            )
        for client in self.stalled:
            told = [
                n
                for n in client.notices
                if n["kind"] in ("gap", "messages_dropped")
                and isinstance(n["body"], dict)
                and n["body"].get("topic") == self.topic
            ]
            if not told:
                problems.append(f"{client.name} was never told of its drops: {client.notices[:3]}")
        if problems:
            raise AssertionError(self.summary() + "\n  " + "\n  ".join(problems))
        self.assert_all_delivered_in_order()


# -- the run ---------------------------------------------------------------------------------


async def _open(factory: Callable[[], _Conn], host: str, port: int, rcvbuf: int | None) -> _Conn:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (host, port))
    except OSError:
        sock.close()
        raise
    _transport, conn = await loop.create_connection(factory, sock=sock)
    return conn


async def _topic_stats(http: httpx.AsyncClient, topic: str) -> dict[str, Any]:
    response = await http.get("/stats")
    response.raise_for_status()
    topics: dict[str, Any] = response.json().get("topics", {})
    return dict(topics.get(topic, {}))


async def _ensure_topic(http: httpx.AsyncClient, topic: str) -> None:
    response = await http.post("/topics", json={"name": topic})
    if response.status_code != 201:
        raise AssertionError(
            f"POST /topics {topic!r} answered {response.status_code}: {response.text[:500]}"
        )


async def _jam(http: httpx.AsyncClient, floods: list[str]) -> bool:
    """Flood each stalled client's private topic until the server drops for it.

    A stalled subscription has a queue of ``_STALLED_QUEUE`` messages, so a drop on its
    topic means its socket and the server's write buffers are full.
    """
    pad = "f" * _FLOOD_PAYLOAD
    for flood in floods:
        sent = 0
        while True:
            if int((await _topic_stats(http, flood)).get("dropped_count", 0)) > 0:
                break
            if sent >= _FLOOD_MAX_BYTES:
                return False
            for _ in range(8):
                response = await http.post(f"/topics/{flood}/messages", json={"data": {"f": pad}})
                response.raise_for_status()
                sent += _FLOOD_PAYLOAD
    return True


async def _publish_all(
    http: httpx.AsyncClient,
    report: StressReport,
    publish: PublishFn | None,
    rate: float | None,
    payload_bytes: int,
    window: int,
) -> None:
    """Publish ``seq`` 0, 1, ... one at a time, never more than ``window`` ahead of a reader.

    The window keeps a reader that is merely busy (this process reads a thousand sockets)
    from looking like a slow consumer to the server: what is in flight to any reading
    client stays below the server's queue sizes. Stalled clients are not waited for.
    """
    pad = "x" * payload_bytes
    path = f"/topics/{quote(report.topic)}/messages"
    readers = report.clients
    start = time.monotonic()
    for seq in range(report.messages):
        while True:
            alive = [c.received for c in readers if c.problem is None and not c.closed]
            if not alive or seq - min(alive) < window:
                break
            await asyncio.sleep(0.002)
        if rate:
            delay = start + seq / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        if publish is None:
            url, body = path, {"data": {"seq": seq, "pad": pad}}
        else:
            url, body = publish(seq)
        response = await http.post(url, json=body)
        if response.status_code >= 300:
            report.publish_errors.append(
                f"seq {seq}: POST {url} answered {response.status_code} {response.text[:300]}"
            )
            continue
        report.published += 1
    report.publish_seconds = time.monotonic() - start


async def astress(
    server: _Server | str,
    *,
    sse_clients: int = 100,
    ws_clients: int = 100,
    messages: int = 1000,
    stalled: int = 1,
    topic: str = "stress",
    publish: PublishFn | None = None,
    seq_key: str = "seq",
    rate: float | None = None,
    payload_bytes: int = 64,
    window: int = 50,
    create_topic: bool = True,
    connect_timeout: float = 60.0,
    drain: float = 60.0,
    connect_batch: int = 100,
) -> StressReport:
    """:func:`stress` for async code (same arguments)."""
    base = server if isinstance(server, str) else server.url
    base = base.rstrip("/")
    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    hostport = f"{host}:{port}"
    report = StressReport(topic=topic, messages=messages)
    floods: list[str] = []
    conns: list[_Conn] = []
    stalled_conns: list[_Conn] = []

    def sse(index: int, stall: bool) -> Callable[[], _Conn]:
        result = ClientResult("sse", index, stalled=stall)
        query: list[tuple[str, Any]] = [("topic", topic)]
        if stall:
            floods.append(f"{topic}.stalled-sse{index}")
            query += [("topic", floods[-1]), ("policy", "drop_oldest")]
            query += [("queue_size", _STALLED_QUEUE)]
        target = (parts.path or "") + "/stream?" + urlencode(query)
        (report.stalled if stall else report.clients).append(result)
        return lambda: _SSEConn(result, seq_key, hostport, target)

    def ws(index: int, stall: bool) -> Callable[[], _Conn]:
        result = ClientResult("ws", index, stalled=stall)
        subscribes: list[dict[str, Any]] = [{"type": "subscribe", "topic": topic}]
        if stall:
            extra = {"policy": "drop_oldest", "queue_size": _STALLED_QUEUE}
            subscribes = [{**s, **extra} for s in subscribes]
            floods.append(f"{topic}.stalled-ws{index}")
            subscribes.append({"type": "subscribe", "topic": floods[-1], **extra})
        (report.stalled if stall else report.clients).append(result)
        path = (parts.path or "") + "/ws"
        return lambda: _WSConn(result, seq_key, hostport, path, subscribes)

    limits = httpx.Limits(max_connections=4)
    async with httpx.AsyncClient(
        base_url=base, timeout=30.0, trust_env=False, limits=limits
    ) as http:
        try:
            if create_topic:
                await _ensure_topic(http, topic)
            started = time.monotonic()
            # Stalled clients first: jam them, then connect the readers.
            stalled_makers = [m for i in range(stalled) for m in (sse(i, True), ws(i, True))]
            for flood in floods:
                await _ensure_topic(http, flood)
            for make in stalled_makers:
                conn = await _open(make, host, port, _STALLED_RCVBUF)
                stalled_conns.append(conn)
                await asyncio.wait_for(conn.ready, connect_timeout)
                conn.stall()
            if stalled:
                report.stalled_jammed = await _jam(http, floods)
            makers = [sse(i, False) for i in range(sse_clients)]
            makers += [ws(i, False) for i in range(ws_clients)]
            for first in range(0, len(makers), connect_batch):
                batch = makers[first : first + connect_batch]
                opened = await asyncio.wait_for(
                    asyncio.gather(*(_open(m, host, port, None) for m in batch)), connect_timeout
                )
                conns += opened
            await asyncio.wait_for(asyncio.gather(*(c.ready for c in conns)), connect_timeout)
            report.connect_seconds = time.monotonic() - started
            dropped_before = int((await _topic_stats(http, topic)).get("dropped_count", 0))
            await _publish_all(http, report, publish, rate, payload_bytes, window)
            drain_start = time.monotonic()
            deadline = drain_start + drain
            while time.monotonic() < deadline and any(
                c.received < report.published and c.problem is None and not c.closed
                for c in report.clients
            ):
                await asyncio.sleep(0.05)
            report.drain_seconds = time.monotonic() - drain_start
            dropped_after = int((await _topic_stats(http, topic)).get("dropped_count", 0))
            report.dropped_during_run = dropped_after - dropped_before
            # Let the stalled clients read what the server kept for them, and its notices.
            for conn in stalled_conns:
                conn.unstall()
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and any(
                not any(n["kind"] in ("gap", "messages_dropped") for n in r.notices)
                and not r.closed
                for r in report.stalled
            ):
                await asyncio.sleep(0.05)
        finally:
            for conn in [*conns, *stalled_conns]:
                conn.close()
            await asyncio.sleep(0)
            for flood in floods:
                with contextlib.suppress(httpx.HTTPError):
                    await http.delete(f"/topics/{flood}")
    return report


def stress(server: _Server | str, **options: Any) -> StressReport:
    """Run a stress scenario against a running server and report what each client got.

    ``server`` is a :class:`~fanwire.testing.servers.FanwireServer` (what the
    ``fanwire_server`` fixture returns) or a base URL. Options (all keyword):

    - ``sse_clients``, ``ws_clients`` (100 each): reading subscribers of ``topic``.
    - ``messages`` (1000): how many to publish, one after the other, each with its
      ``seq`` (0, 1, ...); ``rate`` (None: as fast as the server answers) paces them.
    - ``stalled`` (1): this many SSE *and* this many WebSocket clients that subscribe,
      then never read (their sockets are jammed before publishing starts).
    - ``topic`` ("stress"), created unless ``create_topic=False``.
    - ``publish``: ``seq -> (path, json_body)`` to publish through the app's own route;
      default: ``POST /topics/{topic}/messages`` with ``{"data": {"seq": seq, ...}}``.
    - ``seq_key`` ("seq"): where the seq is in each delivered message's ``data``.
    - ``window`` (50): the publisher never gets more than this many messages ahead of
      the slowest reading client (below the server's queue sizes, so a busy test
      process is never mistaken for a slow consumer); stalled clients are not waited for.
    - ``payload_bytes`` (64): padding of the default messages.
    - ``connect_timeout`` (60 s), ``drain`` (60 s): bounds of the waits.

    Returns a :class:`StressReport`; call :meth:`~StressReport.assert_all_delivered_in_order`
    and :meth:`~StressReport.assert_stalled_did_not_hurt` on it.
    """
    return asyncio.run(astress(server, **options))

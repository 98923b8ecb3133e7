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

The clients are fanwire.testing's own :class:`~fanwire.testing.sse_client.SSEClient`
(httpx + httpx-sse) and :class:`~fanwire.testing.ws_client.WSClient` (websockets), with
``keep=False`` and an ``on_message`` callback that checks each ``seq`` as it arrives, so a
thousand of them hold no history; given a server handle, they are made by its
``sse_client()``/``ws_client()`` (a :class:`~fanwire.testing.matrix.Serving` row's TLS
and compression apply). A stalled client sets a small socket receive buffer and stops
reading once subscribed (:meth:`~fanwire.testing.connection.StallableClient.stall`); it
asks for ``policy=drop_oldest`` and a small queue so the server keeps it connected and
drops for it (announcing the drops), and before publishing starts it is jammed: a
private topic only it subscribes to is flooded until the server reports drops for it, so
its socket is provably full while the measured messages flow.

Publishing goes through fanwire's REST endpoint (``POST /topics/{topic}/messages``) by
default, or through the app's own route: ``publish=lambda seq: ("/quotes", {..., "seq":
seq})`` posts that JSON body to that path, and the app must carry ``seq`` into the
published ``data`` (at ``data[seq_key]``). Messages on the topic without that key (e.g.
from the app's own background tasks) are counted but otherwise ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from .sse_client import SSEClient, SSEFrame
from .tls import client_context_for
from .ws_client import WSClient

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

    @property
    def dropped_by_keepalive(self) -> bool:
        """A WebSocket the server closed for not answering its pings (1011): what a
        server does, rightly, to a client stalled longer than its ping interval plus
        timeout (uvicorn's default: 20 s + 20 s), so such a run cannot tell it of drops."""
        return self.closed and (self.close_reason or "").startswith("close 1011")

    def told_of_drops(self, topic: str) -> bool:
        """Whether the server announced drops on ``topic`` (SSE ``gap``, WebSocket
        ``messages_dropped``): a stalled client is waited for until it was, not until
        its first notice of any topic (its private flood topic's comes first)."""
        return any(
            n["kind"] in ("gap", "messages_dropped")
            and isinstance(n["body"], dict)
            and n["body"].get("topic") == topic
            for n in self.notices
        )


def _progress(result: ClientResult) -> int:
    """Everything ``result``'s client has received so far (messages and notices)."""
    return result.received + result.other_messages + len(result.notices)


class _Client:
    """One subscriber of the run: an :class:`SSEClient` or :class:`WSClient` whose
    ``on_message`` callback feeds its :class:`ClientResult` (nothing is stored)."""

    def __init__(
        self,
        connection: SSEClient | WSClient,
        result: ClientResult,
        subscribes: list[tuple[str, dict[str, Any]]],
        timeout: float,
    ) -> None:
        self.connection = connection
        self.result = result
        self.subscribes = subscribes
        self.timeout = timeout
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self._life())

    async def _life(self) -> None:
        connection, result = self.connection, self.result
        try:
            await connection.connect()
            if isinstance(connection, WSClient):
                for topic, options in self.subscribes:
                    await connection.subscribe(topic, timeout=self.timeout, **options)
                connection.keep = False  # the acks are in; from now on only count
                connection.messages.clear()
            else:  # the stream started (its first frame is `retry:`)
                await connection.read_until(
                    lambda c: c.count > 0, timeout=self.timeout, what="the first frame"
                )
            result.connected = True
            self.ready.set_result(None)
            await connection.until_ended()
            if result.close_reason is None:
                result.close_reason = _why_ended(connection)
        except Exception as error:  # any failure to connect is the run's to report
            result.close_reason = result.close_reason or repr(error)
            if not self.ready.done():
                self.ready.set_exception(ConnectionError(f"{result.name}: {error}"))
                self.ready.exception()  # mark retrieved: the caller may be gone already
        finally:
            result.closed = True

    async def close(self) -> None:
        """Close the connection (the test is done with it)."""
        if not self.result.closed and self.result.close_reason is None:
            self.result.close_reason = "closed by the test"
        await self.connection.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


def _why_ended(connection: SSEClient | WSClient) -> str:
    if isinstance(connection, WSClient):
        return f"close {connection.close_code} {connection.close_reason or ''}".rstrip()
    if connection.error is not None:
        return repr(connection.error)
    return "stream ended by the server"


def _sse_notices(result: ClientResult, seq_key: str) -> Callable[[SSEFrame], None]:
    def on_frame(frame: SSEFrame) -> None:
        if frame.is_message:
            payload = frame.data
            if isinstance(payload, dict):
                result.got(payload.get("data"), seq_key)
        elif frame.event in _SSE_NOTICES:
            result.notice(frame.event, frame.data)

    return on_frame


def _ws_notices(result: ClientResult, seq_key: str) -> Callable[[dict[str, Any]], None]:
    def on_message(message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "event":
            result.got(message.get("data"), seq_key)
        elif kind == "error":
            result.notice("error", message)
        elif kind == "info" and message.get("message") not in ("heartbeat", "connected"):
            result.notice(str(message.get("message")), message)

    return on_message


#: SSE events recorded as notices (``heartbeat`` is not one).
_SSE_NOTICES = frozenset({"gap", "error", "shutdown", "topic_deleted"})


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
        read again each was told of its drops (a ``gap`` / ``messages_dropped`` notice),
        unless the server's keepalive had closed it (:attr:`ClientResult.dropped_by_keepalive`).
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
            if not client.told_of_drops(self.topic) and not client.dropped_by_keepalive:
                problems.append(
                    f"{client.name} was never told of its drops (closed: "
                    f"{client.close_reason if client.closed else 'no'}): {client.notices[:3]}"
                )
        if problems:
            raise AssertionError(self.summary() + "\n  " + "\n  ".join(problems))
        self.assert_all_delivered_in_order()


# -- the run ---------------------------------------------------------------------------------


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
    base = (server if isinstance(server, str) else server.url).rstrip("/")
    new_sse, new_ws = _factories(server, base)
    report = StressReport(topic=topic, messages=messages)
    floods: list[str] = []
    readers: list[_Client] = []
    stalled_clients: list[_Client] = []

    def sse(index: int, stall: bool) -> _Client:
        result = ClientResult("sse", index, stalled=stall)
        topics = [topic]
        options: dict[str, Any] = {}
        if stall:
            floods.append(f"{topic}.stalled-sse{index}")
            topics.append(floods[-1])
            options = {"policy": "drop_oldest", "queue_size": _STALLED_QUEUE}
            options["receive_buffer"] = _STALLED_RCVBUF
        (report.stalled if stall else report.clients).append(result)
        connection = new_sse(
            topics=topics,
            on_message=_sse_notices(result, seq_key),
            keep=False,
            raw=True,
            connect_timeout=connect_timeout,
            **options,
        )
        return _Client(connection, result, [], connect_timeout)

    def ws(index: int, stall: bool) -> _Client:
        result = ClientResult("ws", index, stalled=stall)
        subscribes: list[tuple[str, dict[str, Any]]] = [(topic, {})]
        options: dict[str, Any] = {}
        if stall:
            extra = {"policy": "drop_oldest", "queue_size": _STALLED_QUEUE}
            floods.append(f"{topic}.stalled-ws{index}")
            subscribes = [(topic, extra), (floods[-1], extra)]
            options["receive_buffer"] = _STALLED_RCVBUF
        (report.stalled if stall else report.clients).append(result)
        connection = new_ws(
            on_message=_ws_notices(result, seq_key), open_timeout=connect_timeout, **options
        )
        return _Client(connection, result, subscribes, connect_timeout)

    limits = httpx.Limits(max_connections=4)
    async with httpx.AsyncClient(
        base_url=base,
        timeout=30.0,
        trust_env=False,
        limits=limits,
        verify=client_context_for(base) or True,
    ) as http:
        try:
            if create_topic:
                await _ensure_topic(http, topic)
            started = time.monotonic()
            # Stalled clients first: jam them, then connect the readers.
            for index in range(stalled):
                for make in (sse, ws):
                    await _ensure_topic(http, f"{topic}.stalled-{make.__name__}{index}")
                    client = make(index, True)
                    stalled_clients.append(client)
                    await asyncio.wait_for(asyncio.shield(client.ready), connect_timeout)
                    client.connection.stall()
            if stalled:
                report.stalled_jammed = await _jam(http, floods)
            makers = [(sse, i) for i in range(sse_clients)] + [(ws, i) for i in range(ws_clients)]
            for first in range(0, len(makers), connect_batch):
                batch = [make(i, False) for make, i in makers[first : first + connect_batch]]
                readers += batch
                await asyncio.wait_for(asyncio.gather(*(c.ready for c in batch)), connect_timeout)
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
            # A stalled client reads megabytes of backlog (its flood topic's, then this
            # topic's) before the notice: on a loaded machine that takes longer than any
            # fixed wait, so wait while they still make progress (10 s without any).
            for client in stalled_clients:
                client.connection.resume()
            last, idle_until = -1, 0.0
            while any(not r.told_of_drops(topic) and not r.closed for r in report.stalled):
                now = time.monotonic()
                progress = sum(_progress(r) for r in report.stalled)
                if progress != last:
                    last, idle_until = progress, now + 10.0
                elif now > idle_until:
                    break
                await asyncio.sleep(0.05)
        finally:
            await asyncio.gather(*(c.close() for c in [*readers, *stalled_clients]))
            for flood in floods:
                with contextlib.suppress(httpx.HTTPError):
                    await http.delete(f"/topics/{flood}")
    return report


def _factories(
    server: _Server | str, base: str
) -> tuple[Callable[..., SSEClient], Callable[..., WSClient]]:
    """How to make the run's clients: a server handle's own ``sse_client``/``ws_client``
    (so a :class:`~fanwire.testing.matrix.Serving` row's TLS and compression apply), else
    plain clients of the base URL."""
    sse_client = getattr(server, "sse_client", None)
    ws_client = getattr(server, "ws_client", None)
    if callable(sse_client) and callable(ws_client):
        return sse_client, ws_client
    ws_url = base.replace("http", "ws", 1) + "/ws"
    return partial(SSEClient, base), partial(WSClient, ws_url)


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

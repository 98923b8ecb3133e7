"""An SSE test client for ``GET /stream`` (PROTOCOL.md), on httpx + httpx-sse.

A background task reads frames into :attr:`SSEClient.frames` in arrival order; the
``read_*`` methods wait (bounded) for what a test expects. :meth:`SSEClient.stall` stops
reading, so the server sees a slow consumer; :meth:`SSEClient.resume` reads again.
This is fanwire.testing's one SSE client: :mod:`~fanwire.testing.load` and
:mod:`~fanwire.testing.stress` run on it (``on_message`` and ``keep=False``).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import anyio
import h11
import httpcore
import httpx
import orjson
from anyio.abc import SocketStream
from anyio.streams.tls import TLSAttribute, TLSStream
from httpx_sse import EventSource, ServerSentEvent

# httpx-sse's own decoders (what EventSource.aiter_sse runs), for the raw reader.
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from .connection import StallableClient, connected_socket
from .gaps import Gap
from .tls import client_context_for

#: SSE event types the server uses for notices; every other type is a message.
CONTROL_EVENTS = frozenset(
    {"heartbeat", "gap", "topic_deleted", "shutdown", "error", "conflated", "join", "leave", "end"}
)


class StreamEnded(AssertionError):
    """The stream ended (or broke) before what the test waited for arrived."""


class UnexpectedStatus(AssertionError):
    """The server answered the stream request with an unexpected HTTP status."""


@dataclass(frozen=True)
class SSEFrame:
    """One dispatched SSE frame: ``event``, ``id``, ``data`` (parsed JSON) and ``retry``.

    ``id`` is the stream's last event id when the frame was dispatched (as a browser's
    ``lastEventId``): for a message frame it is the message's id.
    """

    event: str
    id: str
    data: Any
    raw_data: str
    retry: int | None
    received_at: float

    @property
    def is_message(self) -> bool:
        """True for a published message (not a notice, not the initial ``retry:``, not
        the ``info connected`` of a presence member, which has no ``topic``)."""
        if self.event == "info" and self.topic is None:
            return False
        return self.event not in CONTROL_EVENTS and self.raw_data != ""

    @property
    def topic(self) -> str | None:
        """The ``topic`` field of the data, if any."""
        return self.data.get("topic") if isinstance(self.data, dict) else None


def _parse(raw: str) -> Any:
    if raw == "":
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


class _ReceiveBufferBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend for sockets whose receive buffer is set before
    connecting (:func:`~fanwire.testing.connection.connected_socket` says why)."""

    def __init__(self, receive_buffer: int) -> None:
        self.receive_buffer = receive_buffer

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect; errors as httpcore's, which httpx maps to its own."""
        try:
            with anyio.fail_after(timeout):
                sock = await connected_socket(host, port, self.receive_buffer)
        except TimeoutError as error:
            raise httpcore.ConnectTimeout(str(error)) from error
        except OSError as error:
            raise httpcore.ConnectError(str(error)) from error
        return _Stream(await SocketStream.from_socket(sock))

    async def sleep(self, seconds: float) -> None:
        """Sleep (the pool's retries)."""
        await anyio.sleep(seconds)


class _Stream(httpcore.AsyncNetworkStream):
    """An anyio byte stream as httpcore's network stream (what httpcore's own backend
    does, for a socket it did not connect itself)."""

    def __init__(self, stream: SocketStream | TLSStream) -> None:
        self.stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Up to ``max_bytes``; b"" at the end of the stream."""
        try:
            with anyio.fail_after(timeout):
                return await self.stream.receive(max_bytes)
        except anyio.EndOfStream:
            return b""
        except TimeoutError as error:
            raise httpcore.ReadTimeout(str(error)) from error
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as error:
            raise httpcore.ReadError(str(error)) from error

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Send all of ``buffer``."""
        if not buffer:
            return
        try:
            with anyio.fail_after(timeout):
                await self.stream.send(buffer)
        except TimeoutError as error:
            raise httpcore.WriteTimeout(str(error)) from error
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as error:
            raise httpcore.WriteError(str(error)) from error

    async def aclose(self) -> None:
        """Close the socket."""
        await self.stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """The TLS handshake (``https://``)."""
        try:
            with anyio.fail_after(timeout):
                tls = await TLSStream.wrap(
                    self.stream,
                    ssl_context=ssl_context,
                    hostname=server_hostname,
                    standard_compatible=False,
                    server_side=False,
                )
        except TimeoutError as error:
            raise httpcore.ConnectTimeout(str(error)) from error
        except (anyio.BrokenResourceError, OSError) as error:
            raise httpcore.ConnectError(str(error)) from error
        return _Stream(tls)

    def get_extra_info(self, info: str) -> Any:
        """``ssl_object`` (for the negotiated protocol); nothing else is asked for here."""
        if info == "ssl_object":
            return self.stream.extra(TLSAttribute.ssl_object, None)
        return None


class _RawSSE(asyncio.Protocol):
    """:class:`SSEClient`'s reader with ``raw=True``: bytes from the socket, HTTP/1.1 by
    h11, SSE by httpx-sse's own decoders (those its ``EventSource`` runs), with no httpx in
    between. Why: a stress run reads a thousand streams in one process, and httpx's layers
    of stream iterators cost about six times the CPU per frame (measured: 200 streams of
    300 frames took 8.1 s of client CPU through httpx, 1.3 s read raw; the publisher then
    waits on the slowest reader). Stalling pauses the transport, as a stuck browser would.
    """

    def __init__(self, client: SSEClient, request: h11.Request) -> None:
        self.client = client
        self.request = request
        self.http = h11.Connection(h11.CLIENT)
        self.text = codecs.getincrementaldecoder("utf-8")()
        self.lines = SSELineDecoder()
        self.events = SSEDecoder()
        self.head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.finished = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the request."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.http.send(self.request) + self.http.send(h11.EndOfMessage()))

    def data_received(self, data: bytes) -> None:
        """Feed h11; dispatch each complete SSE frame of the body."""
        self.http.receive_data(data)
        self._events()

    def eof_received(self) -> bool:
        """The server closed its side."""
        self.http.receive_data(b"")
        self._events()
        return False

    def _events(self) -> None:
        client = self.client
        try:
            while not self.finished.is_set():
                event = self.http.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                if isinstance(event, h11.Response):
                    client.status_code = event.status_code
                    client.headers = httpx.Headers([(k, v) for k, v in event.headers])
                    if not self.head.done():
                        self.head.set_result(None)
                elif isinstance(event, h11.Data):
                    if client.status_code != 200:
                        client.body += event.data
                        continue
                    for line in self.lines.decode(self.text.decode(event.data)):
                        sse = self.events.decode(line)
                        if sse is not None:
                            client._dispatch(sse)
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    self._end(None)
        except h11.RemoteProtocolError as error:
            self._end(error)

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is gone."""
        self._end(exc)

    def _end(self, error: BaseException | None) -> None:
        if self.finished.is_set():
            return
        if error is not None and self.client.error is None:
            self.client.error = error
        if not self.head.done():
            self.head.set_exception(ConnectionError(f"no answer: {error!r}"))
            self.head.exception()  # mark retrieved
        self.client.ended = True
        self.client._changed.set()
        self.finished.set()
        if self.transport is not None:
            self.transport.close()

    async def until_finished(self) -> None:
        """Wait until the stream ended (the client's reader task)."""
        await self.finished.wait()

    def stall(self, stalled: bool) -> None:
        """Pause (or resume) reading the socket."""
        if self.transport is not None and not self.transport.is_closing():
            if stalled:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def close(self) -> None:
        """Drop the connection."""
        if self.transport is not None:
            self.transport.abort()
        self._end(None)


class SSEClient(StallableClient):
    """One SSE connection to ``{base_url}/stream``; use as ``async with SSEClient(...)``.

    Query parameters follow PROTOCOL.md: ``topics`` (repeated ``topic``), ``last_n``,
    ``last_event_id`` (query) and ``policy``/``queue_size``; ``resume_from`` is sent as
    the ``Last-Event-ID`` header. ``receive_buffer`` shrinks the socket's receive buffer
    so a stalled client backs up the server quickly. ``expect_status`` is the status
    :meth:`connect` requires (the body of any other answer is kept in :attr:`body`).
    An ``https://`` URL is verified with ``ssl_context`` (default: a context trusting
    the test certificate of :mod:`fanwire.testing.tls`).

    ``on_message(frame)`` is called for every frame as it arrives (before any wait sees
    it); with ``keep=False`` frames are not stored in :attr:`frames` (a load client
    that only counts), so the ``read_*`` waits can only wait on :attr:`count` or the end.
    ``raw=True`` reads the socket without httpx (same parsers; :class:`_RawSSE` says why):
    the stress helper's clients.
    """

    _ended_error = StreamEnded

    def __init__(
        self,
        base_url: str,
        *,
        topics: Sequence[str] | None = None,
        last_n: int | None = None,
        resume_from: str | None = None,
        last_event_id: str | None = None,
        policy: str | None = None,
        queue_size: int | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        path: str = "/stream",
        receive_buffer: int | None = None,
        stalled: bool = False,
        expect_status: int = 200,
        connect_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        on_message: Callable[[SSEFrame], None] | None = None,
        keep: bool = True,
        raw: bool = False,
    ) -> None:
        """Describe the connection; :meth:`connect` (or ``async with``) opens it."""
        super().__init__(stalled=stalled, keep=keep)
        self.on_message = on_message
        self.raw = raw
        self._raw: _RawSSE | None = None
        self.url = base_url.rstrip("/") + path
        self.ssl_context = ssl_context or client_context_for(self.url)
        query: list[tuple[str, Any]] = [("topic", t) for t in topics or ()]
        for key, value in (
            ("last_n", last_n),
            ("last_event_id", last_event_id),
            ("policy", policy),
            ("queue_size", queue_size),
        ):
            if value is not None:
                query.append((key, value))
        query += list((params or {}).items())
        self.params = query
        self.request_headers = dict(headers or {})
        if resume_from is not None:
            self.request_headers["Last-Event-ID"] = resume_from
        self.receive_buffer = receive_buffer
        self.expect_status = expect_status
        self.connect_timeout = connect_timeout
        self.frames: list[SSEFrame] = []
        self.status_code: int | None = None
        self.headers: httpx.Headers = httpx.Headers()
        self.body: bytes = b""
        self.ended = False
        self.error: BaseException | None = None
        self._client: httpx.AsyncClient | None = None
        self._response: httpx.Response | None = None

    # -- connection --------------------------------------------------------------------
    async def connect(self) -> Self:
        """Send the request, check the status, and start reading (unless stalled)."""
        if self.raw:
            return await self._connect_raw()
        # Plain HTTP needs no context: verify=False spares loading the CA bundle, which a
        # stress run of hundreds of clients would otherwise do once per client.
        transport = httpx.AsyncHTTPTransport(verify=self.ssl_context or False)
        if self.receive_buffer is not None:
            # httpx has no option for a socket set up before connect() (httpcore applies
            # socket_options after it, too late for SO_RCVBUF): give its pool a backend.
            transport._pool = httpcore.AsyncConnectionPool(
                ssl_context=self.ssl_context,
                network_backend=_ReceiveBufferBackend(self.receive_buffer),
            )
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(self.connect_timeout, read=None),
            trust_env=False,
        )
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        headers.update(self.request_headers)
        request = self._client.build_request("GET", self.url, params=self.params, headers=headers)
        self._response = await self._client.send(request, stream=True)
        self.status_code = self._response.status_code
        self.headers = self._response.headers
        if self.status_code != 200:
            self.body = await self._response.aread()
        if not await self._status_expected(str(self._response.url)):
            return self
        self._reader = asyncio.create_task(self._read(EventSource(self._response)))
        return self

    async def _status_expected(self, url: str) -> bool:
        """Check :attr:`status_code`; False if the stream is not to be read (not 200)."""
        if self.status_code != 200:
            self.ended = True
            if self.status_code != self.expect_status:
                await self.close()
                raise UnexpectedStatus(
                    f"GET {url} answered {self.status_code}, expected "
                    f"{self.expect_status}: {self.body[:2000]!r}"
                )
            return False
        if self.expect_status != 200:
            await self.close()
            raise UnexpectedStatus(f"GET {url} answered 200, expected {self.expect_status}")
        return True

    def _dispatch(self, sse: ServerSentEvent) -> None:
        raw = sse.data
        frame = SSEFrame(sse.event, sse.id, _parse(raw), raw, sse.retry, time.time())
        self.count += 1
        if self.on_message is not None:
            self.on_message(frame)
        if self.keep:
            self.frames.append(frame)
        self._changed.set()

    async def _read(self, source: EventSource) -> None:
        try:
            await self._allowed.wait()
            sse: ServerSentEvent
            async for sse in source.aiter_sse():
                self._dispatch(sse)
                await self._allowed.wait()
        except (httpx.HTTPError, OSError) as error:
            self.error = error
        finally:
            self.ended = True
            self._changed.set()

    async def _connect_raw(self) -> Self:
        url = httpx.URL(self.url, params=self.params)
        host, port = url.host, url.port or (443 if url.scheme == "https" else 80)
        loop = asyncio.get_running_loop()
        headers = [("Host", url.netloc.decode()), ("Accept", "text/event-stream")]
        headers += [("Cache-Control", "no-store"), *self.request_headers.items()]
        request = h11.Request(method="GET", target=url.raw_path, headers=headers)
        if self.receive_buffer is not None:
            sock = await connected_socket(host, port, self.receive_buffer)
            connecting = loop.create_connection(
                lambda: _RawSSE(self, request),
                sock=sock,
                ssl=self.ssl_context,
                server_hostname=host if self.ssl_context else None,
            )
        else:
            connecting = loop.create_connection(
                lambda: _RawSSE(self, request), host, port, ssl=self.ssl_context
            )
        _transport, protocol = await asyncio.wait_for(connecting, self.connect_timeout)
        self._raw = protocol
        await asyncio.wait_for(asyncio.shield(protocol.head), self.connect_timeout)
        if not await self._status_expected(str(url)):
            return self
        self._reader = asyncio.create_task(protocol.until_finished())
        if not self._allowed.is_set():
            protocol.stall(True)
        return self

    def stall(self) -> None:
        """Stop reading: data backs up in the socket, then in the server."""
        super().stall()
        if self._raw is not None:
            self._raw.stall(True)

    def resume(self) -> None:
        """Read again after :meth:`stall` (or a ``stalled=True`` start)."""
        super().resume()
        if self._raw is not None:
            self._raw.stall(False)

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._raw is not None:
            self._raw.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._response is not None:
            await self._response.aclose()
        if self._client is not None:
            await self._client.aclose()
        self.ended = True

    # -- what arrived ------------------------------------------------------------------
    @property
    def messages(self) -> list[SSEFrame]:
        """Message frames (published messages), in arrival order."""
        return [f for f in self.frames if f.is_message]

    @property
    def ids(self) -> list[str]:
        """Ids of the message frames, in arrival order."""
        return [f.id for f in self.frames if f.is_message]

    @property
    def last_id(self) -> str | None:
        """The id to resume from (as a browser would send in ``Last-Event-ID``)."""
        return self.frames[-1].id or None if self.frames else None

    @property
    def retry(self) -> int | None:
        """The ``retry:`` value the server sent, if any."""
        return next((f.retry for f in self.frames if f.retry is not None), None)

    def of_event(self, event: str) -> list[SSEFrame]:
        """Frames whose event type is ``event``."""
        return [f for f in self.frames if f.event == event]

    def sequence(self, topic: str | None = None) -> list[str | Gap]:
        """Message ids with :class:`Gap` markers where the server announced a gap.

        With ``topic``, only that topic's messages and gaps. Feed it to
        :func:`fanwire.testing.assertions.assert_in_order`.
        """
        out: list[str | Gap] = []
        for frame in self.frames:
            if frame.is_message and (topic is None or frame.topic == topic):
                out.append(frame.id)
            elif frame.event == "gap":
                gap = Gap.from_notice(frame.data)
                if topic is None or gap.topic in (None, topic):
                    out.append(gap)
        return out

    # -- waiting -----------------------------------------------------------------------
    async def read_until(
        self,
        condition: Callable[[SSEClient], bool],
        *,
        timeout: float = 10.0,
        what: str = "condition",
        allow_end: bool = False,
    ) -> None:
        """Wait until ``condition(self)`` holds.

        Raises :class:`StreamEnded` if the stream ends first (unless ``allow_end``) and
        :class:`TimeoutError` after ``timeout`` seconds; both say what had arrived.
        """
        if self._reader is None and not self.ended:
            raise RuntimeError("not connected")
        await self._wait(condition, timeout=timeout, what=what, allow_end=allow_end)

    @property
    def _ended(self) -> bool:
        return self.ended

    def _ended_because(self) -> str:
        return f"stream ended (error={self.error!r})"

    def _waiting(self, what: str) -> str:
        tail = "\n  ".join(repr(f) for f in self.frames[-5:])
        return (
            f"waiting for {what} on {self.url}; {self.count} frames, "
            f"{len(self.messages)} messages kept so far; last frames:\n  {tail}"
        )

    async def read_messages(self, count: int, *, timeout: float = 10.0) -> list[SSEFrame]:
        """Wait until ``count`` message frames arrived in all; return the first ``count``."""
        await self.read_until(
            lambda c: len(c.messages) >= count, timeout=timeout, what=f"{count} messages"
        )
        return self.messages[:count]

    async def read_until_event(
        self, event: str, *, start: int = 0, timeout: float = 10.0
    ) -> SSEFrame:
        """Wait for a frame of type ``event`` at index ``start`` or later; return it.

        Pass ``start=len(client.frames)`` to wait for a new one.
        """

        def found(client: SSEClient) -> bool:
            return any(f.event == event for f in client.frames[start:])

        await self.read_until(found, timeout=timeout, what=f"event {event!r}")
        return next(f for f in self.frames[start:] if f.event == event)

    async def read_to_end(self, *, timeout: float = 10.0) -> list[SSEFrame]:
        """Wait until the server ends the stream; return every frame."""
        await self.read_until(lambda c: c.ended, timeout=timeout, what="end of stream")
        return list(self.frames)

    async def read_for(self, seconds: float) -> list[SSEFrame]:
        """Keep reading for ``seconds``; return the frames that arrived meanwhile."""
        start = len(self.frames)
        await asyncio.sleep(seconds)
        return self.frames[start:]

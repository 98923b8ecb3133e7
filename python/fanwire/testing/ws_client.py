"""A WebSocket test client for ``/ws`` (PROTOCOL.md), on the ``websockets`` asyncio client.

A background task reads every server message (parsed with orjson) into
:attr:`WSClient.messages` in arrival order; requests (:meth:`WSClient.subscribe`,
:meth:`~WSClient.publish`, :meth:`~WSClient.ping`, ...) await the answer carrying their
``request_id``. :meth:`WSClient.stall` stops reading, to play a slow consumer.
This is fanwire.testing's one WebSocket client: :mod:`~fanwire.testing.load` and
:mod:`~fanwire.testing.stress` run on it (``on_message`` and ``keep=False``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, Self
from urllib.parse import urlencode, urlsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .connection import StallableClient, connected_socket
from .gaps import Gap
from .tls import client_context_for

_request_ids = itertools.count(1)
_HAS_PROXY_OPTION = "proxy" in inspect.signature(connect.__init__).parameters


class WSClosed(AssertionError):
    """The connection closed before what the test waited for arrived."""


class WSErrorReply(AssertionError):
    """The server answered a request with an ``error`` message."""

    def __init__(self, reply: dict[str, Any]) -> None:
        """Keep the reply; its ``code`` is in :attr:`code`."""
        super().__init__(f"server answered with an error: {reply}")
        self.reply = reply
        self.code: str | None = reply.get("code")


class WSClient(StallableClient):
    """One WebSocket connection; use as ``async with WSClient(server.ws_url) as ws``.

    ``params`` become the query string (e.g. ``access_token``). On connect the client
    waits for the server's ``info`` ``connected`` message (``expect_connected``) and keeps
    its ``client_id``. ``receive_buffer`` (bytes) and ``max_queue`` (messages buffered by
    the library) bound how much a stalled client absorbs before the server backs up.
    ``compression="deflate"`` negotiates permessage-deflate (default: none). A ``wss://``
    URL is verified with ``ssl_context`` (default: a context trusting the test
    certificate of :mod:`fanwire.testing.tls`).

    ``on_message(message)`` is called for every message as it arrives; set ``keep`` to
    False (at construction, or once subscribed) to stop storing them in :attr:`messages`
    (a load client that only counts: requests then cannot find their answers).
    """

    _ended_error = WSClosed

    def __init__(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        receive_buffer: int | None = None,
        max_queue: int = 16,
        compression: str | None = None,
        expect_connected: bool = True,
        stalled: bool = False,
        open_timeout: float = 10.0,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        keep: bool = True,
    ) -> None:
        """Describe the connection; :meth:`connect` (or ``async with``) opens it."""
        super().__init__(stalled=stalled, keep=keep)
        self.on_message = on_message
        self.url = url + ("?" + urlencode(dict(params)) if params else "")
        self.ssl_context = ssl_context or client_context_for(self.url)
        self.request_headers = dict(headers or {})
        self.receive_buffer = receive_buffer
        self.max_queue = max_queue
        self.compression = compression
        self.expect_connected = expect_connected
        self.open_timeout = open_timeout
        self.timeout = timeout
        self.messages: list[dict[str, Any]] = []
        self.client_id: str | None = None
        self.closed = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._ws: ClientConnection | None = None

    # -- connection --------------------------------------------------------------------
    async def connect(self) -> Self:
        """Open the connection, start reading, and await ``info`` ``connected``."""
        options: dict[str, Any] = {
            "additional_headers": self.request_headers,
            "open_timeout": self.open_timeout,
            "ping_interval": None,  # a stalled client must not be closed by keepalive
            "max_size": None,
            "max_queue": self.max_queue,
            "compression": self.compression,
        }
        if _HAS_PROXY_OPTION:
            options["proxy"] = None
        if self.ssl_context is not None:
            options["ssl"] = self.ssl_context
        if self.receive_buffer is not None:
            parts = urlsplit(self.url)
            host, port = parts.hostname or "127.0.0.1", parts.port or self._default_port
            options["sock"] = await connected_socket(host, port, self.receive_buffer)
        self._ws = await connect(self.url, **options)
        self._reader = asyncio.create_task(self._read(self._ws))
        if self.expect_connected:
            hello = await self.recv_until(
                lambda m: m.get("type") == "info" and m.get("message") == "connected",
                what="info connected",
            )
            self.client_id = hello.get("client_id")
        return self

    @property
    def _default_port(self) -> int:
        return 443 if self.url.startswith("wss://") else 80

    async def _read(self, ws: ClientConnection) -> None:
        try:
            while True:
                await self._allowed.wait()
                text = await ws.recv()
                try:
                    message = orjson.loads(text)
                except orjson.JSONDecodeError:
                    message = {"type": "<not json>", "raw": text}
                if not isinstance(message, dict):
                    message = {"type": "<not an object>", "raw": message}
                message["_received_at"] = time.time()
                self.count += 1
                if self.on_message is not None:
                    self.on_message(message)
                if self.keep:
                    self.messages.append(message)
                self._changed.set()
        except ConnectionClosed as closed:
            frame = closed.rcvd or closed.sent
            self.close_code = frame.code if frame is not None else 1006
            self.close_reason = frame.reason if frame is not None else None
        finally:
            self.closed = True
            self._changed.set()

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        self.closed = True

    # -- sending -----------------------------------------------------------------------
    async def send(self, message: Mapping[str, Any]) -> None:
        """Send one JSON object as a text message."""
        await self.send_raw(orjson.dumps(dict(message)).decode())

    async def send_raw(self, text: str | bytes) -> None:
        """Send a text (str) or binary (bytes) message as is."""
        if self._ws is None:
            raise RuntimeError("not connected")
        await self._ws.send(text)

    async def request(
        self, message: Mapping[str, Any], *, timeout: float | None = None, check: bool = True
    ) -> dict[str, Any]:
        """Send ``message`` (adding a ``request_id`` if absent) and await its answer.

        The answer is the ``ack``, ``pong`` or ``error`` echoing that ``request_id``. With
        ``check``, an ``error`` raises :class:`WSErrorReply`.
        """
        body = dict(message)
        body.setdefault("request_id", f"r{next(_request_ids)}")
        rid = body["request_id"]
        start = len(self.messages)
        await self.send(body)
        reply = await self.recv_until(
            lambda m: m.get("request_id") == rid and m.get("type") in ("ack", "pong", "error"),
            start=start,
            timeout=timeout,
            what=f"answer to {body.get('type')} request_id={rid!r}",
        )
        if check and reply.get("type") == "error":
            raise WSErrorReply(reply)
        return reply

    async def subscribe(
        self,
        topic: str,
        *,
        last_n: int | None = None,
        since: str | None = None,
        policy: str | None = None,
        queue_size: int | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> dict[str, Any]:
        """Subscribe and await the ack (or the error, raised when ``check``)."""
        body: dict[str, Any] = {"type": "subscribe", "topic": topic}
        for key, value in (
            ("last_n", last_n),
            ("since", since),
            ("policy", policy),
            ("queue_size", queue_size),
            ("request_id", request_id),
        ):
            if value is not None:
                body[key] = value
        return await self.request(body, timeout=timeout, check=check)

    async def unsubscribe(
        self, topic: str, *, request_id: str | None = None, check: bool = True
    ) -> dict[str, Any]:
        """Unsubscribe and await the ack."""
        body: dict[str, Any] = {"type": "unsubscribe", "topic": topic}
        if request_id is not None:
            body["request_id"] = request_id
        return await self.request(body, check=check)

    async def publish(
        self,
        topic: str,
        data: Any,
        *,
        event: str | None = None,
        request_id: str | None = None,
        check: bool = True,
    ) -> dict[str, Any]:
        """Publish and await the ack (its ``message_id`` is the new message's id)."""
        body: dict[str, Any] = {"type": "publish", "topic": topic, "data": data}
        if event is not None:
            body["event"] = event
        if request_id is not None:
            body["request_id"] = request_id
        return await self.request(body, check=check)

    async def ping(self, *, request_id: str | None = None) -> dict[str, Any]:
        """Send ``ping`` and await the ``pong``."""
        body: dict[str, Any] = {"type": "ping"}
        if request_id is not None:
            body["request_id"] = request_id
        return await self.request(body)

    # -- what arrived ------------------------------------------------------------------
    @property
    def extensions(self) -> list[str]:
        """The extensions the handshake agreed on, e.g. ``["permessage-deflate"]``."""
        if self._ws is None:
            raise RuntimeError("not connected")
        return [str(extension.name) for extension in self._ws.protocol.extensions]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """Received messages whose ``type`` is ``kind``."""
        return [m for m in self.messages if m.get("type") == kind]

    @property
    def events(self) -> list[dict[str, Any]]:
        """Received ``event`` messages, in arrival order."""
        return self.of_type("event")

    def event_ids(self, topic: str | None = None) -> list[str]:
        """``message_id`` of the received events (of ``topic`` if given)."""
        return [m["message_id"] for m in self.events if topic is None or m.get("topic") == topic]

    def infos(self, message: str) -> list[dict[str, Any]]:
        """Received ``info`` messages whose ``message`` is ``message``."""
        return [m for m in self.of_type("info") if m.get("message") == message]

    def sequence(self, topic: str | None = None) -> list[str | Gap]:
        """Event ids with :class:`Gap` markers at ``gap`` / ``messages_dropped`` notices."""
        out: list[str | Gap] = []
        for m in self.messages:
            if topic is not None and m.get("topic") not in (None, topic):
                continue
            if m.get("type") == "event":
                out.append(m["message_id"])
            elif m.get("type") == "info" and m.get("message") in ("gap", "messages_dropped"):
                out.append(Gap.from_notice(m))
        return out

    # -- waiting -----------------------------------------------------------------------
    async def recv_until(
        self,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        *,
        type: str | None = None,
        start: int = 0,
        timeout: float | None = None,
        what: str | None = None,
    ) -> dict[str, Any]:
        """Wait for a message at index ``start`` or later matching ``predicate``/``type``.

        Returns the first match. Pass ``start=len(ws.messages)`` to wait for a new one.
        Raises :class:`WSClosed` if the connection closes first, :class:`TimeoutError`
        after ``timeout`` (default: the client's ``timeout``).
        """

        def matches(m: dict[str, Any]) -> bool:
            return (type is None or m.get("type") == type) and (predicate is None or predicate(m))

        label = what or (f"type {type!r}" if type else "a matching message")
        index = start

        def found(client: WSClient) -> bool:
            nonlocal index
            while index < len(client.messages):
                if matches(client.messages[index]):
                    return True
                index += 1
            return False

        await self.wait_for(found, timeout=timeout, what=label)
        return self.messages[index]

    async def recv_events(
        self, count: int, *, topic: str | None = None, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` events (of ``topic``) arrived in all; return the first ones."""

        def enough(client: WSClient) -> bool:
            return len(client.event_ids(topic)) >= count

        await self.wait_for(enough, timeout=timeout, what=f"{count} events")
        return [m for m in self.events if topic is None or m.get("topic") == topic][:count]

    async def wait_closed(self, *, timeout: float | None = None) -> int | None:
        """Wait until the server closes the connection; return the close code."""
        await self.wait_for(lambda c: c.closed, timeout=timeout, what="close", allow_close=True)
        return self.close_code

    async def wait_for(
        self,
        condition: Callable[[WSClient], bool],
        *,
        timeout: float | None = None,
        what: str = "condition",
        allow_close: bool = False,
    ) -> None:
        """Wait until ``condition(self)`` holds (bounded; errors say what had arrived)."""
        limit = self.timeout if timeout is None else timeout
        await self._wait(condition, timeout=limit, what=what, allow_end=allow_close)

    @property
    def _ended(self) -> bool:
        return self.closed

    def _ended_because(self) -> str:
        return f"connection closed ({self.close_code})"

    def _waiting(self, what: str) -> str:
        tail = "\n  ".join(repr(m) for m in self.messages[-5:])
        return f"waiting for {what} on {self.url}; {self.count} messages so far; last:\n  {tail}"

"""WebSocket ``/ws`` (PROTOCOL.md, "WebSocket").

One task reads client messages and answers each (under the send lock, so the ``ack`` of
a subscribe is written before any event of it); one task pumps the subscription's
batches to the socket. Under uvicorn, while that task is parked and no reply is being
written, the broker's wake-up round writes a batch itself (``writable``/``write``, see
``Subscription.direct``): no task step per client. A bad message gets an ``error`` and the
connection stays open.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import WebSocket, WebSocketDisconnect

from .. import _core
from ..enums import Mode, Policy
from ..errors import FanwireError, InvalidMessage, LimitReached, ShuttingDown, TopicNotFound
from ..jsoncheck import check_integers
from ..names import check_topic
from ..presence import check_info
from ..subscription import Subscription
from ..topics import check_policy
from ..wire import Notices, ws_error, ws_info, ws_text
from . import _uvicorn
from ._uvicorn import FrameWriter, frame_writer, hang_up_ws
from .auth import Claims
from .limits import TokenBucket
from .runtime import Runtime, http_error

FIRST = asyncio.FIRST_COMPLETED
_LOG = logging.getLogger("uvicorn.error")  # the server's log (handed-off WebSockets)
# The close code for why the core ended the stream (PROTOCOL.md); any other end: 1000.
CLOSE_CODES = {_core.StreamEnd.shutdown: 1001, _core.StreamEnd.slow_consumer: 1008}
# ``?heartbeat=``: ASCII decimal seconds; below a tenth of a second it is raised to that.
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
MIN_HEARTBEAT = 0.1
_GONE = (WebSocketDisconnect, OSError)  # OSError: uvicorn's ClientDisconnected
# The RuntimeErrors of a send or receive racing the close (Starlette's, uvicorn's): the
# client is gone. Any other RuntimeError (a RecursionError, say) is a bug to be logged.
_CLOSED_TEXTS = (
    "once a close message has been sent",
    "once a disconnect message has been received",
    "after sending 'websocket.close'",
)

PendingAck = tuple[asyncio.Future[str | None], str, Any]  # (message id, topic, request_id)
#: Redis mode: publishes of one connection sent on before the oldest is acknowledged.
PENDING_PUBLISHES = 256


def _field(msg: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """``msg[name]`` if absent (None) or of ``kind`` (bools are never ints), else raise."""
    value = msg.get(name)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise InvalidMessage(f"{name} has the wrong type")
    if not isinstance(value, kind):
        raise InvalidMessage(f"{name} has the wrong type")
    return value


def _gone(exc: BaseException) -> bool:
    """True when ``exc`` only says the client is gone (then it is not an error)."""
    if isinstance(exc, _GONE):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _CLOSED_TEXTS)


def _topic(msg: dict[str, Any]) -> str:
    topic = _field(msg, "topic", str)
    if topic is None:
        raise InvalidMessage("topic is required")
    return check_topic(topic)


def _reply(kind: str, request_id: Any, **fields: Any) -> str:
    obj: dict[str, Any] = {"type": kind, **fields}
    if request_id is not None:
        obj["request_id"] = request_id
    return ws_text(obj)


def _ack(request_type: str, topic: str, message: str, request_id: Any, **more: Any) -> str:
    return _reply(
        "ack", request_id, request_type=request_type, topic=topic, message=message, **more
    )


class Connection:
    """One WebSocket client: its subscription, claims, publish budget and send lock."""

    # Slots: one lives per connection, and an instance dict costs each ~1 KB.
    __slots__ = (
        "acker",
        "acks",
        "bucket",
        "claims",
        "client_id",
        "frames",
        "heartbeat",
        "held",
        "last_write",
        "lock",
        "loop",
        "mode",
        "notices",
        "runtime",
        "settings",
        "sub",
        "ws",
    )

    def __init__(
        self,
        websocket: WebSocket,
        runtime: Runtime,
        claims: Claims,
        heartbeat: float | None = None,
    ) -> None:
        self.ws = websocket
        self.runtime = runtime
        self.settings = runtime.settings
        self.claims = claims
        self.client_id = secrets.token_hex(8)
        self.lock = asyncio.Lock()
        self.bucket = TokenBucket(self.settings.ws_publish_rate)
        # Under uvicorn, event batches go to its transport as ready-made frames (one
        # write per wake-up); elsewhere, one ASGI send per message.
        self.frames: FrameWriter | None = (
            frame_writer(websocket) if self.settings.ws_batch_frames else None
        )
        self.mode = Mode.ws if self.frames is None else Mode.ws_frames
        self.notices = Notices(self.mode)
        self.sub: Subscription = runtime.broker.subscribe(
            None,
            mode=self.mode,
            policy=self.settings.ws_policy,
            queue_size=self.settings.ws_queue_size,
        )
        self.sub.client_id = self.client_id
        self.loop = asyncio.get_running_loop()
        self.last_write = 0.0  # loop time of the last batch or heartbeat sent
        self.heartbeat = heartbeat  # idle seconds between heartbeats (None: none)
        # A batch the pump took but has not written yet (it waits for the send lock).
        self.held: bytes | str | list[str] | None = None
        if self.frames is not None:
            self.sub.direct = self
        # Redis mode: publishes sent on to Redis whose acks are not written yet, in order
        # (written by one task per connection, started with the first such publish).
        # Made with the first such publish: a queue (three deques and an event, 1.5 KB)
        # on every connection would cost each idle one for nothing.
        self.acks: asyncio.Queue[PendingAck] | None = None
        self.acker: asyncio.Task[None] | None = None

    # -- answering client messages -------------------------------------------------
    async def answer(self, raw: str | bytes, parsed: dict[str, Any] | None = None) -> str:
        """The reply (ack, pong or error) to one client message (``parsed``: ``raw``
        parsed already, by quick_publish)."""
        try:
            msg = orjson.loads(raw) if parsed is None else parsed
        except orjson.JSONDecodeError:
            return ws_error("INVALID_JSON", "message is not valid JSON")
        if not isinstance(msg, dict):
            return ws_error("INVALID_MESSAGE", "message must be a JSON object")
        request_id = msg.get("request_id")
        if request_id is not None and not isinstance(request_id, str):
            return ws_error("INVALID_MESSAGE", "request_id must be a string")
        kind = msg.get("type")
        if not isinstance(kind, str):  # never repr() it: it may be nested 1,000 deep
            why = "type is required" if kind is None else "type must be a string"
            return ws_error("INVALID_MESSAGE", why, request_id)
        handler = _ANSWERS.get(kind)
        if handler is None:
            return ws_error("INVALID_MESSAGE", f"unknown type {kind!r}", request_id)
        try:
            check_integers(raw)  # before a handler takes a value orjson changed
            reply = handler(self, msg, request_id)
            return await reply if inspect.isawaitable(reply) else reply
        except FanwireError as exc:
            return ws_error(exc.code, exc.message, request_id)

    async def subscribe(self, msg: dict[str, Any], request_id: Any) -> str:
        topic = _topic(msg)
        last_n = _field(msg, "last_n", int) or 0
        options = self.runtime.broker.topic_options(topic)
        retention = options.retention or self.runtime.broker.retention
        if not 0 <= last_n <= retention:
            raise InvalidMessage(f"last_n must be between 0 and {retention}")
        since = _field(msg, "since", str)
        policy = _field(msg, "policy", str)
        if policy is not None:
            policy = Policy.parse(policy)
        queue_size = _field(msg, "queue_size", int)
        if queue_size is not None and queue_size < 1:
            raise InvalidMessage("queue_size must be at least 1")
        info = check_info(msg.get("presence"))
        join_leave = _field(msg, "join_leave", bool) or False
        self.claims.check_subscribe(topic)
        limit = self.settings.max_subscriptions_per_connection
        if topic not in self.sub.topics and len(self.sub.topics) >= limit:
            raise LimitReached(f"at most {limit} subscriptions per connection")
        if self.runtime.broker.auto_creates(topic):
            await self.runtime.broker.acreate_topic(topic)
        await self.runtime.broker.aknow_topics([topic])
        # The topic's defaults (its options, else the settings'); a client asks for less.
        default_queue = options.ws_queue_size or self.settings.ws_queue_size
        queue_size = default_queue if queue_size is None else min(queue_size, default_queue)
        if policy is None and options.ws_policy is not None:
            policy = options.ws_policy
        check_policy(policy, options)
        self.sub.add(topic, last_n=last_n, since=since, policy=policy, queue_size=queue_size)
        if info is not None or join_leave:
            self.runtime.broker.join(
                self.sub,
                topic,
                client_id=self.client_id,
                user=self.claims.subject,
                info=info,
                join_leave=join_leave,
            )
        return _ack("subscribe", topic, "subscribed", request_id)

    async def _visible(self, msg: dict[str, Any]) -> str:
        """A topic whose occupancy or presence this client may see (as a subscriber)."""
        topic = _topic(msg)
        self.claims.check_subscribe(topic)
        await self.runtime.broker.aknow_topics([topic])
        if not self.runtime.broker.has_topic(topic):
            raise TopicNotFound(f"no topic {topic!r}")
        return topic

    async def occupancy(self, msg: dict[str, Any], request_id: Any) -> str:
        topic = await self._visible(msg)
        count = self.runtime.broker.occupancy(topic)
        return _reply("occupancy", request_id, topic=topic, subscribers=count)

    async def presence(self, msg: dict[str, Any], request_id: Any) -> str:
        topic = await self._visible(msg)
        members = self.runtime.broker.presence(topic)
        return _reply("presence", request_id, topic=topic, members=members)

    def unsubscribe(self, msg: dict[str, Any], request_id: Any) -> str:
        topic = _topic(msg)
        if not self.sub.remove(topic):
            return ws_error("NOT_SUBSCRIBED", f"not subscribed to {topic!r}", request_id)
        return _ack("unsubscribe", topic, "unsubscribed", request_id)

    async def publish(self, msg: dict[str, Any], request_id: Any) -> str:
        topic = _topic(msg)
        if "data" not in msg:
            raise InvalidMessage("data is required")
        event = _field(msg, "event", str)
        key = _field(msg, "idempotency_key", str)
        self.claims.check_publish(topic)
        self.bucket.take()
        if key is not None:
            return await self.publish_idempotent(topic, msg["data"], event, key, request_id)
        published = await self.runtime.broker.apublish(topic, msg["data"], event)
        return _ack("publish", topic, "published", request_id, message_id=published.message_id)

    # -- publishes answered without a task step or the send lock ---------------------
    def quick_publish(self, raw: str | bytes) -> str | bool | dict[str, Any] | None:
        """A ``publish`` handled on the spot; else None, or the message parsed (a dict)
        when it was, for the general path to take on (``answer(raw, parsed)``).

        In memory the publish is one core call and the answer (its ack, or an error) is
        returned at once, for the caller to write straight to the transport when it can:
        before the wake-up round that delivers the event, so the ack still comes first.
        In Redis mode the ``XADD`` is queued for the next pipeline (True): the connection
        reads on, its publishes pipelined in order, and the acker writes each ack, in
        order, once Redis accepted it (never before: an ack means durable).
        """
        if (b"publish" not in raw) if isinstance(raw, bytes) else ("publish" not in raw):
            return None
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(msg, dict):
            return None
        if msg.get("type") != "publish":
            return msg
        if "idempotency_key" in msg:
            return msg  # checked against the dedupe window: the general path
        request_id = msg.get("request_id")
        if request_id is not None and not isinstance(request_id, str):
            return msg
        broker = self.runtime.broker
        if broker.backend is not None and self.frames is None:
            return msg  # acks through the lock: the general path
        try:
            check_integers(raw)
            topic = _topic(msg)
            if broker.backend is not None and broker.auto_creates(topic):
                return msg  # maybe a topic to create first: the general path
            if "data" not in msg:
                raise InvalidMessage("data is required")
            event = _field(msg, "event", str)
            self.claims.check_publish(topic)
            self.bucket.take()
            if broker.backend is None:
                published = broker.publish_message(topic, msg["data"], event)
                return _ack(
                    "publish", topic, "published", request_id, message_id=published.message_id
                )
            future = broker.submit_publish(topic, msg["data"], event)
        except FanwireError as exc:
            if broker.backend is not None and self.pending_acks():
                future = self.loop.create_future()  # after the acks of those before it
                future.set_exception(exc)
                topic = ""
            else:
                return ws_error(exc.code, exc.message, request_id)
        future.add_done_callback(_retrieve)
        if self.acks is None:
            self.acks = asyncio.Queue()
            self.acker = asyncio.ensure_future(self.send_acks(self.acks))
        self.acks.put_nowait((future, topic, request_id))
        return True

    def pending_acks(self) -> int:
        """Pipelined publishes whose acks are not written yet."""
        return 0 if self.acks is None else self.acks.qsize()

    async def send_acks(self, acks: asyncio.Queue[PendingAck]) -> None:
        """Redis mode: write the ack (or error) of each pipelined publish, in order."""
        while True:
            future, topic, request_id = await acks.get()
            try:
                try:
                    message_id = await future
                    if message_id is None:
                        raise TopicNotFound(f"no topic {topic!r}")
                    reply = _ack("publish", topic, "published", request_id, message_id=message_id)
                except FanwireError as exc:
                    reply = ws_error(exc.code, exc.message, request_id)
                if self.held is None and self.writable():
                    assert self.frames is not None
                    self.frames.write(_core.ws_frame(reply))
                else:
                    async with self.lock:
                        while self.held is not None:
                            batch, self.held = self.held, None
                            await self.send_batch(batch)
                        await self.ws.send_text(reply)
            finally:
                acks.task_done()

    async def publish_idempotent(
        self, topic: str, data: Any, event: str | None, key: str, request_id: Any
    ) -> str:
        """The ack of a publish with ``idempotency_key`` (``duplicate``: a repeat within
        the topic's dedupe window, answered with the first publish's id)."""
        broker = self.runtime.broker
        published = await broker.apublish_idempotent(topic, data, event, idempotency_key=key)
        return _ack(
            "publish",
            topic,
            "published",
            request_id,
            message_id=published.message_id,
            duplicate=published.duplicate,
        )

    # -- the two tasks ----------------------------------------------------------------
    async def read(self) -> None:
        """Answer client messages until the client leaves."""
        try:
            await self._read()
        finally:
            if self.acker is not None:
                self.acker.cancel()

    async def _read(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            raw = message.get("bytes") or b"" if raw is None else raw
            reply = self.quick_publish(raw)
            taken_before = self.held  # the pump's batch taken before this message, if any
            if reply is True:
                if self.acks is not None and self.acks.qsize() >= PENDING_PUBLISHES:
                    await self.acks.join()
                continue
            if isinstance(reply, str) and self.held is None and self.writable():
                assert self.frames is not None
                self.frames.write(_core.ws_frame(reply))
                continue
            if self.acks is not None:
                await self.acks.join()  # the acks of earlier publishes go first
            async with self.lock:
                if isinstance(reply, str):
                    # Published already: only what the pump took before goes first. A
                    # batch it took since may hold this publish's own event, which
                    # follows the ack (under granian, event 1 came before its ack).
                    if taken_before is not None and self.held is taken_before:
                        self.held = None
                        await self.send_batch(taken_before)
                else:
                    # What the pump took before this message goes out before its reply:
                    # after an unsubscribe's ack, no event of that topic may follow.
                    while self.held is not None:
                        batch, self.held = self.held, None
                        await self.send_batch(batch)
                    reply = await self.answer(raw, reply if isinstance(reply, dict) else None)
                await self.ws.send_text(reply)

    async def pump(self) -> _core.StreamEnd | None:
        """Send every batch (and, if asked for, a heartbeat when idle); the close reason
        at the end."""
        loop = self.loop
        heartbeat = self.heartbeat
        self.last_write = loop.time()
        while True:
            timeout = None
            if heartbeat is not None:
                timeout = max(0.0, heartbeat - (loop.time() - self.last_write))
            try:
                batch = await self.sub.next_batch(timeout=timeout)
            except StopAsyncIteration:
                return self.sub.close_reason
            if batch is None:
                assert heartbeat is not None
                if loop.time() - self.last_write < heartbeat:
                    continue  # batches went out directly meanwhile (see write())
                batch = self.notices.heartbeat()
            self.held = batch  # the reader may write it first (see read())
            async with self.lock:
                batch, self.held = self.held, None
                if batch is not None:
                    await self.send_batch(batch)
            self.last_write = loop.time()
            await self.drained()

    # -- the wake-up round's direct path (Subscription.direct) ----------------------
    def writable(self) -> bool:
        """Frames may go straight to the transport: no reply is being written and the
        transport has room (else the pump task takes over, with its backpressure)."""
        frames = self.frames
        return (
            frames is not None
            and not self.lock.locked()
            and frames.has_room(self.settings.ws_write_buffer)
        )

    def write(self, batch: bytes) -> None:
        assert self.frames is not None
        self.frames.write(batch)
        self.last_write = self.loop.time()

    async def send_batch(self, batch: bytes | str | list[str]) -> None:
        """Frames in one transport write, or texts one ASGI send each."""
        if isinstance(batch, bytes):
            assert self.frames is not None
            self.frames.write_if_open(batch)
            return
        for text in [batch] if isinstance(batch, str) else batch:
            await self.ws.send_text(text)

    async def drained(self) -> None:
        """Backpressure for direct writes: while the transport holds more than
        ``ws_write_buffer`` bytes, take nothing more (the queue's policy handles the lag)."""
        frames = self.frames
        limit = self.settings.ws_write_buffer
        while frames is not None and frames.backlogged(limit) and not self.sub.must_close.is_set():
            await asyncio.sleep(0.01)

    async def run(self) -> None:
        """Greet, then read and pump until the client leaves or the server ends it."""
        await self.ws.send_text(ws_info("connected", client_id=self.client_id))
        reader = asyncio.ensure_future(self.read())
        pump = asyncio.ensure_future(self.pump())
        closing = self.sub.must_close.future()  # shared: never cancelled here
        stopping = self.runtime.when_stopping()
        tasks = (reader, pump, stopping)
        try:
            await self.serve(reader, pump, closing, stopping)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not (
                isinstance(result, asyncio.CancelledError) or _gone(result)
            ):
                raise result

    async def serve(
        self,
        reader: asyncio.Future[None],
        pump: asyncio.Future[_core.StreamEnd | None],
        closing: asyncio.Future[Any],
        stopping: asyncio.Future[None],
    ) -> None:
        """Until the client leaves, or the server ends the connection: then the last
        frames, the close and the close handshake all fit in one grace, after which a
        socket that still has not gone is reset (see ``_uvicorn.hang_up_ws``)."""
        waiting: set[asyncio.Future[Any]] = {reader, pump, closing, stopping}
        sub = self.sub
        goodbye: bytes | str | None = None  # the core's shutdown notice, if it ends us here
        while True:
            # Once the shutdown began, look again now and then: a client may unsubscribe
            # from its last topic before the core's shutdown notice of it was taken.
            timeout = 0.1 if stopping.done() else None
            done, waiting = await asyncio.wait(waiting, timeout=timeout, return_when=FIRST)
            if reader in done:
                return  # the client left
            if pump in done or closing in done:
                break
            if stopping.done() and (goodbye := sub.end_for_shutdown()) is not None:
                break  # no subscription left for the core's shutdown to end
        deadline = self.loop.time() + self.runtime.close_grace()
        reason: _core.StreamEnd | None = None
        if pump.done() or closing.done():  # the core ends us: let the last texts out
            await asyncio.wait((reader, pump), timeout=self._left(deadline), return_when=FIRST)
            if reader.done():
                return
            if pump.done() and not pump.cancelled() and pump.exception() is None:
                reason = pump.result()
        else:  # shutdown, and no subscription the core could end: say goodbye here
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            assert goodbye is not None
            if await self._within(deadline, self._say(goodbye)):
                reason = sub.close_reason
        reader.cancel()  # nothing more is answered: no reply may follow the close
        await asyncio.gather(reader, return_exceptions=True)
        if reason is not None:
            await self._within(deadline, self.ws.close(CLOSE_CODES.get(reason, 1000)))
        await hang_up_ws(self.ws, deadline)

    def _left(self, deadline: float) -> float:
        return max(0.0, deadline - self.loop.time())

    async def _within(self, deadline: float, step: Awaitable[None]) -> bool:
        """``step`` done by loop time ``deadline``; False if it timed out or the client
        is gone."""
        try:
            await asyncio.wait_for(step, self._left(deadline))
        except (TimeoutError, *_GONE):
            return False
        except RuntimeError as exc:
            if not _gone(exc):
                raise
            return False
        return True

    async def _say(self, notice: bytes | str) -> None:
        async with self.lock:
            await self.send_batch(notice)


# The method answering each client message type: one table for every connection.
_ANSWERS: dict[str, Callable[[Connection, dict[str, Any], Any], str | Awaitable[str]]] = {
    "subscribe": Connection.subscribe,
    "unsubscribe": Connection.unsubscribe,
    "publish": Connection.publish,
    "ping": lambda conn, msg, rid: _reply("pong", rid),
    "occupancy": Connection.occupancy,
    "presence": Connection.presence,
}


class Native:
    """A WebSocket the core owns after its handshake (``ws_handoff``): the per-connection
    state Python keeps, with no task while the client is idle.

    The core's writer thread writes every frame (events, and the replies queued here
    through ``Subscription.commit``, in order), parses the client's frames, answers pings
    and closes the connection. Python only answers client messages: the core queues them
    and wakes the loop once for however many arrived; :meth:`on_wake` answers the ones it
    can on the spot (in-memory publishes, as ``Connection.quick_publish``) and starts a
    task only for one that must wait (a subscribe, say), which answers the rest in order
    and ends. The answers are ``Connection``'s: nothing of the request handling is
    duplicated. Measured at 1,000 idle clients under uvicorn, the path it replaces cost
    about 47 KB per connection (uvicorn's protocol, Starlette's frames, two tasks) and a
    Python ``transport.write`` per client and wake-up.
    """

    __slots__ = ("busy", "conn", "sink", "task")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.sink: _core.WsSink | None = None
        self.busy = False  # a task answers this connection's messages (see on_wake)
        self.task: asyncio.Task[None] | None = None

    def on_wake(self) -> None:
        """The loop was woken for this connection: answer what the client sent."""
        if self.busy or self.sink is None:
            return  # the running task takes the new messages when it is done
        sink = self.sink
        messages = sink.receive()
        conn = self.conn
        try:
            for index, raw in enumerate(messages):
                sink.hold()  # a publish's own event waits for its ack (see WsSink.hold)
                try:
                    reply = conn.quick_publish(raw)
                    if not isinstance(reply, str):
                        self.busy = True
                        self.task = asyncio.ensure_future(self.answer(messages[index:]))
                        return
                    conn.sub.commit(_core.ws_frame(reply))
                finally:
                    sink.release()
        except Exception as exc:
            self.failed(exc)

    async def answer(self, messages: list[bytes]) -> None:
        """Answer ``messages`` in order, then whatever came meanwhile, then end."""
        conn = self.conn
        try:
            while messages and (sink := self.sink) is not None:
                for raw in messages:
                    sink.hold()  # as in on_wake: the reply goes before what it caused
                    try:
                        reply = conn.quick_publish(raw)
                        parsed = reply if isinstance(reply, dict) else None
                        text = reply if isinstance(reply, str) else await conn.answer(raw, parsed)
                        conn.sub.commit(_core.ws_frame(text))
                    finally:
                        sink.release()
                messages = self.sink.receive() if self.sink is not None else []
        except Exception as exc:
            self.failed(exc)
        finally:
            self.busy = False
            self.task = None

    def failed(self, exc: BaseException) -> None:
        """A bug in a handler: logged with its traceback (as uvicorn logs one that leaves
        an ASGI app), and the connection closed with 1011 (internal error)."""
        _LOG.error("Exception in a WebSocket handler", exc_info=exc)
        if self.sink is not None:
            self.sink.close_with(1011)

    def ended(self) -> None:
        """The core closed the connection (the subscription closed itself already)."""
        self.sink = None
        if self.task is not None:
            self.task.cancel()
        self.conn.sub.on_native_wake = None


def hand_off(conn: Connection, heartbeat: float | None) -> bool:
    """Give the accepted WebSocket under ``conn`` to the core for good (False, and
    nothing changed, when it cannot take it: see ``_uvicorn.ws_socket``). In memory only:
    in Redis mode acks wait for Redis (``Connection.send_acks``), which stays on the
    Python path. The connection's slot is released when the core closed the socket."""
    runtime = conn.runtime
    if not conn.settings.ws_handoff or conn.frames is None or runtime.broker.backend is not None:
        return False
    found = _uvicorn.ws_socket(conn.ws)
    if found is None:
        return False
    protocol, fd, queued = found
    max_message, ping_interval, ping_timeout = _uvicorn.ws_limits(protocol)
    _uvicorn.let_go_ws(protocol)  # uvicorn reads no more: the core reads from now on
    native = Native(conn)
    stopping = runtime.when_stopping()
    sub = conn.sub

    def ended() -> None:
        stopping.cancel()
        native.ended()
        runtime.connections.release("ws")

    try:
        sink = sub.attach_ws(
            fd,
            max_message=max_message,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            heartbeat=heartbeat or 0.0,
            close_grace=runtime.close_grace(),
            on_end=ended,
        )
    except BaseException:
        os.close(fd)
        raise
    native.sink = sink
    sub.direct = None
    sub.on_native_wake = native.on_wake
    # Shutdown: a connection with no subscription has nothing the core's shutdown would
    # end, so it is told here (with subscriptions, the core ends it itself: False).
    stopping.add_done_callback(lambda future: None if future.cancelled() else sink.shutdown())
    sink.send(_core.ws_frame(ws_info("connected", client_id=conn.client_id)))
    conn.ws = None  # type: ignore[assignment]  # (uvicorn's objects go with it)
    conn.frames = None
    if queued:  # what uvicorn read already is answered before what the core reads
        native.busy = True
        native.task = asyncio.ensure_future(native.answer(queued))
    return True


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a pipelined publish's error as seen: its connection may be gone (no log)."""
    if not future.cancelled():
        future.exception()


async def _refuse(websocket: WebSocket, exc: FanwireError) -> None:
    """Refuse before the handshake: HTTP status when the server can send one."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(http_error(exc))
        _uvicorn.denial_done(websocket)
        return
    await websocket.accept()
    await websocket.send_text(ws_error(exc.code, exc.message))
    await websocket.close(1008 if exc.status == 400 else 1013)


def heartbeat_of(value: str | None) -> float | None:
    """``/ws?heartbeat=<seconds>``: plain decimal seconds above 0 (at least
    ``MIN_HEARTBEAT``), or None when absent; anything else is refused."""
    if value is None:
        return None
    if not _SECONDS.fullmatch(value) or not 0 < float(value) < math.inf:
        raise InvalidMessage("heartbeat must be a positive number of seconds")
    return max(float(value), MIN_HEARTBEAT)


async def endpoint(websocket: WebSocket, runtime: Runtime) -> None:
    """``/ws``: authenticate, take a connection slot, then serve the client."""
    token = runtime.auth.token_from(websocket.headers, websocket.query_params)
    try:
        claims = runtime.auth.claims(token)
    except FanwireError as exc:
        await websocket.accept()
        await websocket.send_text(ws_error(exc.code, exc.message))
        await websocket.close(1008)
        return
    try:
        heartbeat = heartbeat_of(websocket.query_params.get("heartbeat"))
        if runtime.broker.shutting_down:
            raise ShuttingDown("server is shutting down")
        runtime.connections.acquire("ws")
    except FanwireError as exc:
        await _refuse(websocket, exc)
        return
    handed = False  # to the core: it releases the slot when the connection ends
    try:
        await websocket.accept()
        try:
            connection = Connection(websocket, runtime, claims, heartbeat)
        except FanwireError as exc:  # shutdown began during the handshake
            await websocket.send_text(ws_error(exc.code, exc.message))
            await websocket.close(1001)
            return
        if handed := hand_off(connection, heartbeat):
            return
        async with connection.sub:
            await connection.run()
    except Exception as exc:
        if not _gone(exc):
            raise
    finally:
        if not handed:
            runtime.connections.release("ws")

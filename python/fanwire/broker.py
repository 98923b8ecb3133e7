"""asyncio facade over the native core: :class:`Broker` and :class:`Subscription`.

The core (``fanwire._core``) does the fan-out in C++ with the GIL released. It wakes this
module through one eventfd: the loop watches it with ``add_reader`` and, once per batch of
wake-ups, :meth:`Broker._drain` resolves the waiting subscriptions. A subscription then
takes *everything* ready in one call per topic, so a client costs one write per wake-up.

With ``redis_url`` the broker is one node of a cluster sharing Redis Streams
(:mod:`fanwire.backends.redis`): publishes go to Redis and come back through the node's
reader, so use the async methods (:meth:`Broker.apublish`, :meth:`Broker.acreate_topic`,
:meth:`Broker.adelete_topic`) on the event loop; the sync ones block on Redis.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

from . import _core
from .errors import InvalidMessage, PayloadTooLarge, ShuttingDown, TopicNotFound
from .names import check_topic, is_valid_name
from .waker import Waker
from .wire import Notices

if TYPE_CHECKING:
    from .backends.history import Replay
    from .backends.redis import RedisBackend

Policy = Literal["drop_oldest", "disconnect"]
Mode = Literal["sse", "ws", "ws_frames"]
_POLICIES = {"drop_oldest": _core.DROP_OLDEST, "disconnect": _core.DISCONNECT}
_TIMEOUT = object()
# How each mode takes a batch from a core subscriber: (data, count, dropped).
_TAKE = {
    "sse": _core.CoreSub.take_sse,
    "ws": _core.CoreSub.take_ws,
    "ws_frames": _core.CoreSub.take_ws_frames,
}


@dataclass(frozen=True)
class Published:
    """What a publish returns: the message id and how many subscribers it reached."""

    message_id: str
    subscribers: int


@dataclass(frozen=True)
class TopicInfo:
    name: str
    subscribers: int
    messages: int
    dropped: int


class Broker:
    """Topics, publishing and subscriptions, backed by the C++ core.

    ``publish`` may be called from any thread. Subscriptions belong to the event loop that
    created the first one (or that called :meth:`start`).
    """

    def __init__(
        self,
        *,
        retention: int = 1000,
        max_payload: int = 64 * 1024,
        max_topics: int = 10_000,
        auto_create: bool = False,
        redis_url: str | None = None,
        redis_prefix: str = "fanwire",
        wake_interval: float = 0.005,
    ) -> None:
        self.retention = retention
        self.max_payload = max_payload
        self.max_topics = max_topics
        self.auto_create = auto_create
        self._core = _core.Core(retention, external_ids=bool(redis_url))
        self._backend: RedisBackend | None = None
        if redis_url:
            from .backends.redis import RedisBackend

            self._backend = RedisBackend(
                self._core,
                self._schedule_drain,
                self._announce_gap,
                redis_url,
                retention=retention,
                max_topics=max_topics,
                prefix=redis_prefix,
            )
        self._waiters = itertools.count(1)
        self._subs: dict[int, Subscription] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._waker = Waker(self._core.fileno(), self._drain, wake_interval)
        self._shutting_down = False
        self._writer: _core.Writer | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Attach to the running event loop (idempotent); subscriptions need it."""
        loop = asyncio.get_running_loop()
        if self._backend is not None:
            self._backend.start()
        if self._loop is loop:
            return
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._waker.attach(loop)

    async def astart(self) -> None:
        """:meth:`start` (in Redis mode the node's reader starts connecting)."""
        self.start()

    async def aclose(self) -> None:
        """:meth:`close`, then stop the Redis reader and close its connections."""
        self.close()
        if self._backend is not None:
            await self._backend.stop()

    @property
    def backend(self) -> RedisBackend | None:
        """The Redis backend, or None for an in-memory broker."""
        return self._backend

    def shutdown(self) -> None:
        """Close every subscription (each gets its ``shutdown`` notice) and refuse new work."""
        self._shutting_down = True
        self._core.shutdown()

    def close(self) -> None:
        """Shut down and detach from the loop."""
        self.shutdown()
        if self._loop is not None and not self._loop.is_closed():
            self._waker.detach()
            self._drain()
        self._loop = None

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @property
    def writer(self) -> _core.Writer:
        """The native writer thread (created on first use by a native SSE stream)."""
        if self._writer is None:
            self._writer = _core.Writer(self._core)
        return self._writer

    # -- topics ----------------------------------------------------------------------
    def create_topic(self, name: str) -> bool:
        """Create ``name``; False when it already existed."""
        check_topic(name)
        self._check_open()
        if not self._core.has_topic(name) and self._core.topic_count() >= self.max_topics:
            from .errors import LimitReached

            raise LimitReached(f"at most {self.max_topics} topics")
        if self._backend is not None:
            return self._backend.create_topic_sync(name)
        return self._core.create_topic(name)

    def delete_topic(self, name: str) -> bool:
        """Delete ``name``; its subscribers get ``topic_deleted``. False when unknown."""
        if self._backend is not None:
            return self._backend.delete_topic_sync(name)
        return self._core.delete_topic(name)

    async def acreate_topic(self, name: str) -> bool:
        """:meth:`create_topic` for the event loop; in Redis mode, known on every node."""
        if self._backend is None:
            return self.create_topic(name)
        check_topic(name)
        self._check_open()
        return await self._backend.create_topic(name)

    async def adelete_topic(self, name: str) -> bool:
        """:meth:`delete_topic` for the event loop; in Redis mode, on every node."""
        if self._backend is None:
            return self.delete_topic(name)
        return await self._backend.delete_topic(check_topic(name))

    def has_topic(self, name: str) -> bool:
        return self._core.has_topic(name)

    def topics(self) -> list[TopicInfo]:
        return [TopicInfo(*row) for row in self._core.topic_stats()]

    def stats(self) -> dict[str, Any]:
        """Per-topic and server-wide counters, the body of ``GET /stats``."""
        topics = self.topics()
        counters = self._core.counters()
        return {
            "topics": {
                t.name: {
                    "message_count": t.messages,
                    "subscriber_count": t.subscribers,
                    "dropped_count": t.dropped,
                }
                for t in topics
            },
            "topic_count": len(topics),
            "subscriber_count": counters["subscribers"],
            "published_count": counters["published"],
            "delivered_count": counters["delivered"],
            "dropped_count": counters["dropped"],
            "retained_messages": counters["messages"],
        }

    # -- publishing ------------------------------------------------------------------
    def publish(self, topic: str, data: Any, event: str | None = None) -> str:
        """Publish ``data`` (any JSON value) to ``topic``; returns the message id."""
        return self.publish_message(topic, data, event).message_id

    def publish_message(self, topic: str, data: Any, event: str | None = None) -> Published:
        """Like :meth:`publish`, also telling how many subscribers the message reached."""
        return self.publish_encoded(topic, _encode(data), event)

    def publish_encoded(
        self, topic: str, payload: bytes, event: str | None = None, message_id: str = ""
    ) -> Published:
        """Publish an already JSON-encoded payload (compact, no raw newline)."""
        self._check_publish(payload, event)
        if self._backend is not None and not message_id:
            mid = self._backend.publish_sync(topic, payload, event or "")
            if mid is None:
                self._missing(topic)
                mid = self._backend.publish_sync(topic, payload, event or "")
            return Published(mid or "", self._local_subscribers(topic))
        on_loop = self._loop_thread == threading.get_ident()
        try:
            # Only valid names ever become topics, so the name is checked on a miss only.
            mid, count, must_drain = self._core.publish(
                topic, payload, event or "", message_id, on_loop
            )
        except KeyError:
            check_topic(topic)
            if not self.auto_create:
                raise TopicNotFound(f"no topic {topic!r}") from None
            self.create_topic(topic)
            mid, count, must_drain = self._core.publish(
                topic, payload, event or "", message_id, on_loop
            )
        if must_drain:
            self._schedule_drain()
        return Published(mid, count)

    async def apublish(self, topic: str, data: Any, event: str | None = None) -> Published:
        """:meth:`publish_message` for the event loop.

        In Redis mode it returns once Redis accepted the message (``XADD``), with the
        stream id as message id and this node's subscribers of ``topic`` as count; it
        raises :class:`~fanwire.backends.BackendUnavailable` (503) when Redis is down.
        """
        if self._backend is None:
            return self.publish_message(topic, data, event)
        payload = _encode(data)
        self._check_publish(payload, event)
        mid = await self._backend.publish(topic, payload, event or "")
        if mid is None:
            if not self.auto_create:
                check_topic(topic)
                raise TopicNotFound(f"no topic {topic!r}")
            await self.acreate_topic(topic)
            mid = await self._backend.publish(topic, payload, event or "")
        return Published(mid or "", self._local_subscribers(topic))

    def _check_publish(self, payload: bytes, event: str | None) -> None:
        if event is not None and not is_valid_name(event):
            raise InvalidMessage("event names match ^[A-Za-z0-9_.-]{1,255}$")
        if len(payload) > self.max_payload:
            raise PayloadTooLarge(f"payload is {len(payload)} bytes, limit {self.max_payload}")
        if self._shutting_down:
            raise ShuttingDown("server is shutting down")

    def _missing(self, topic: str) -> None:
        """A publish found no topic: create it (auto_create) or raise TopicNotFound."""
        check_topic(topic)
        if not self.auto_create:
            raise TopicNotFound(f"no topic {topic!r}")
        self.create_topic(topic)

    def _local_subscribers(self, topic: str) -> int:
        """This node's subscribers of ``topic`` (Redis mode): counted when there are few
        topics, else as the node's reader last saw them (O(1))."""
        if self._backend is not None and self._core.topic_count() > 100:
            return self._backend.reader.subscribers.get(topic, 0)
        return next((row[1] for row in self._core.topic_stats() if row[0] == topic), 0)

    def _announce_gap(self, topic: str, first_available: str | None) -> None:
        """Tell every local subscriber of ``topic`` that messages may be missing."""
        for sub in list(self._subs.values()):
            sub._inject_gap(topic, first_available)

    # -- subscribing -----------------------------------------------------------------
    def subscribe(
        self,
        topics: str | Iterable[str] | None = None,
        *,
        last_n: int = 0,
        since: str | None = None,
        policy: Policy = "drop_oldest",
        queue_size: int = 1000,
        mode: Mode = "sse",
        end_when_empty: bool | None = None,
    ) -> Subscription:
        """Subscribe to one or several topics (or none yet: add them with ``add``).

        ``mode`` picks the batch type: ``"sse"`` yields ``bytes`` (concatenated frames),
        ``"ws"`` yields ``list[str]`` (one text message each). ``end_when_empty`` (default:
        True for SSE) ends the iteration once no topic is left.
        """
        self._check_open()
        self.start()
        if end_when_empty is None:
            end_when_empty = mode == "sse"
        sub = Subscription(self, next(self._waiters), mode, end_when_empty, policy, queue_size)
        names = [topics] if isinstance(topics, str) else list(topics or ())
        try:
            for name in names:
                sub.add(name, last_n=last_n, since=since)
        except BaseException:
            sub.close()
            raise
        return sub

    # -- internals -------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._shutting_down:
            raise ShuttingDown("server is shutting down")

    def _schedule_drain(self) -> None:
        self._waker.request()

    def _drain(self) -> None:
        """Wake every subscription the core reported ready (runs on the loop)."""
        for token in self._core.drain():
            sub = self._subs.get(token & _core.WAITER_MASK)
            if sub is not None:
                sub._wake(closing=bool(token & _core.CLOSING_BIT))


class Subscription:
    """One client's subscriptions: an async iterator of batches, and a context manager.

    ``async for batch in sub`` yields everything ready at each wake-up: ``bytes`` of SSE
    frames, or a ``list[str]`` of WebSocket texts, with the protocol's notices (gap,
    dropped, topic_deleted, shutdown, slow consumer) in place. It ends on shutdown, on a
    slow-consumer disconnect, or (``end_when_empty``) when no topic is left; then
    ``close_reason`` says why. ``must_close`` is set as soon as the core decides to close
    the client, so a handler blocked on a stalled socket can stop waiting for it.
    """

    def __init__(
        self,
        broker: Broker,
        waiter: int,
        mode: Mode,
        end_when_empty: bool,
        policy: Policy,
        queue_size: int,
    ) -> None:
        self._broker = broker
        self._waiter = waiter
        self._mode = mode
        self._notices = Notices(mode)
        self._end_when_empty = end_when_empty
        self._policy = policy
        self._queue_size = queue_size
        self._subs: dict[str, _core.CoreSub] = {}
        self._held: dict[str, asyncio.Task[Replay]] = {}  # Redis mode: history on its way
        self._pending: list[Any] = []
        self._ready = False
        self._future: asyncio.Future[object] | None = None
        self.must_close = asyncio.Event()
        self._sink: _core.Sink | None = None
        self.close_reason: str | None = None
        self.received = 0  # messages delivered to this subscription (all topics)
        self.dropped = 0  # messages dropped by its queues' drop_oldest policy
        broker._subs[waiter] = self

    # -- topics ----------------------------------------------------------------------
    @property
    def topics(self) -> list[str]:
        return list(self._subs)

    def add(
        self,
        topic: str,
        *,
        last_n: int = 0,
        since: str | None = None,
        policy: Policy | None = None,
        queue_size: int | None = None,
    ) -> None:
        """Subscribe to one more topic (re-subscribing replaces the old one)."""
        check_topic(topic)
        self._broker._check_open()
        policy_code = _POLICIES[policy or self._policy]
        size = max(1, min(queue_size or self._queue_size, self._broker.retention))
        core_sub = self._core_subscribe(topic, max(0, last_n), since, policy_code, size)
        self.remove(topic)
        self._subs[topic] = core_sub
        backend = self._broker._backend
        if backend is not None:
            replay = backend.resume(topic, core_sub, since, last_n, self._notices)
            if replay is not None:
                self._held[topic] = replay
                replay.add_done_callback(functools.partial(self._replayed, topic, core_sub))
        elif core_sub.gap:
            self._pending.append(self._notices.gap(topic, core_sub.first_available))
        self._wake()

    def _core_subscribe(
        self, topic: str, last_n: int, since: str | None, policy: int, size: int
    ) -> _core.CoreSub:
        core = self._broker._core
        try:
            return core.subscribe(topic, self._waiter, last_n, since, policy, size)
        except KeyError:
            backend = self._broker._backend
            if backend is None or not backend.adopt(topic):
                raise TopicNotFound(f"no topic {topic!r}") from None
        return core.subscribe(topic, self._waiter, last_n, since, policy, size)

    def _replayed(self, topic: str, core_sub: _core.CoreSub, task: asyncio.Task[Replay]) -> None:
        """History from Redis arrived: queue it, then let the core go on after it."""
        if self._held.get(topic) is not task:
            return
        del self._held[topic]
        if task.cancelled():
            return
        replay = task.result()
        self._pending.extend(replay.items)
        if replay.floor is not None:
            core_sub.skip_through(replay.floor)
        self._wake()

    def _inject_gap(self, topic: str, first_available: str | None) -> None:
        """Queue a gap notice for ``topic`` after what its core queue holds now."""
        core_sub = self._subs.get(topic)
        if core_sub is None:
            return
        if self._sink is not None:  # the native writer owns the queue: it sends the notice
            self._sink.inject(self._notices.gap(topic, first_available))  # type: ignore[arg-type]
            return
        if topic not in self._held:
            self._take(topic, core_sub, self._pending)
        self._pending.append(self._notices.gap(topic, first_available))
        self._wake()

    def remove(self, topic: str) -> bool:
        """Unsubscribe from ``topic``; False when not subscribed."""
        core_sub = self._subs.pop(topic, None)
        if core_sub is None:
            return False
        self._held.pop(topic, None)  # a replay on its way is dropped, not cancelled:
        core_sub.close()  # redis-py may never finish a cancelled command
        return True

    @property
    def native_ready(self) -> bool:
        """Whether :meth:`attach_socket` may be used now (SSE, no history on its way)."""
        return self._mode == "sse" and not self._held and self._sink is None

    def attach_socket(self, fd: int, heartbeat: float) -> _core.Sink:
        """Hand this SSE subscription to the native writer, which from now on writes its
        frames (as HTTP/1.1 chunks) straight to ``fd``, a duplicate it owns. Do not
        iterate the subscription afterwards: wait for ``must_close`` instead."""
        assert self.native_ready and self._sink is None
        preamble = b"".join(self._pending)
        self._pending = []
        subs = list(self._subs.values())
        self._sink = self._broker.writer.attach(subs, fd, preamble, heartbeat, self._waiter)
        return self._sink

    def close(self) -> None:
        """Unsubscribe from everything (idempotent)."""
        if self._sink is not None:
            self._sink.close()
        for core_sub in self._subs.values():
            core_sub.close()
        self._subs.clear()
        self._held.clear()  # replays on their way are dropped (see remove)
        self._broker._subs.pop(self._waiter, None)
        if self.close_reason is None:
            self.close_reason = "closed"
        self._wake()

    # -- iteration -------------------------------------------------------------------
    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        batch = await self.next_batch()
        assert batch is not None
        return batch

    async def next_batch(self, timeout: float | None = None) -> Any:
        """The next batch, or None after ``timeout`` seconds with nothing ready.

        Raises StopAsyncIteration once the subscription has ended.
        """
        while True:
            batch = self._collect()
            if batch:
                return batch
            if self._finished():
                raise StopAsyncIteration
            if self._park() and await self._sleep(timeout) is _TIMEOUT:
                return None

    def _finished(self) -> bool:
        if self.close_reason is not None:
            return True
        if self._end_when_empty and not self._subs:
            self.close_reason = "no_topics"
            return True
        return False

    def _park(self) -> bool:
        """Ask every topic to wake us on its next message; False if something is ready."""
        if self._ready:
            return False
        held = self._held
        parked = [sub.arm() for topic, sub in self._subs.items() if topic not in held]
        return all(parked)

    async def _sleep(self, timeout: float | None) -> object:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._future = future
        timer = None if timeout is None else loop.call_later(timeout, _resolve, future)
        try:
            return await future
        finally:
            self._future = None
            if timer is not None:
                timer.cancel()

    def _wake(self, closing: bool = False) -> None:
        self._ready = True
        if closing:
            self.must_close.set()
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    def _collect(self) -> Any:
        """Take everything ready from every topic, with notices in protocol order."""
        self._ready = False
        out = self._pending
        self._pending = []
        for topic, core_sub in list(self._subs.items()):
            if topic not in self._subs:  # the connection ended earlier in this loop
                break
            if topic in self._held:  # its history comes first
                continue
            self._take(topic, core_sub, out)
            reason = core_sub.close_reason
            if reason and (reason == "slow_consumer" or core_sub.pending == 0):
                self._end_topic(topic, reason, out)
        if self._mode == "ws":
            return out
        return out[0] if len(out) == 1 else b"".join(out)

    def _take(self, topic: str, core_sub: _core.CoreSub, out: list[Any]) -> None:
        """Append what ``core_sub`` has ready (after a drop notice, if any) to ``out``."""
        data, count, dropped = _TAKE[self._mode](core_sub)
        self.received += count
        if dropped:
            self.dropped += dropped
            out.append(self._notices.dropped(topic, dropped))
        if data:
            out.extend(data) if self._mode == "ws" else out.append(data)

    def _end_topic(self, topic: str, reason: str, out: list[Any]) -> None:
        self._subs.pop(topic).close()
        if reason == "topic_deleted":
            out.append(self._notices.topic_deleted(topic))
        elif self.close_reason is None and reason in ("shutdown", "slow_consumer"):
            # The whole connection ends: one notice, and every other topic is released.
            self.close_reason = reason
            notice = self._notices.shutdown() if reason == "shutdown" else None
            out.append(notice or self._notices.slow_consumer(topic))
            for core_sub in self._subs.values():
                core_sub.close()
            self._subs.clear()


def _encode(data: Any) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError as exc:
        raise InvalidMessage(f"data is not JSON-serializable: {exc}") from None


def _resolve(future: asyncio.Future[object]) -> None:
    if not future.done():
        future.set_result(_TIMEOUT)

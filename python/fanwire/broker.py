"""asyncio facade over the native core: :class:`Broker` and :class:`Subscription`.

The core (``fanwire._core``) does the fan-out in C++ with the GIL released. It wakes this
module through one eventfd: the loop watches it with ``add_reader`` and, once per batch of
wake-ups, :meth:`Broker._drain` resolves the waiting subscriptions. A subscription then
takes *everything* ready in one call per topic, so a client costs one write per wake-up.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from . import _core
from .errors import InvalidMessage, PayloadTooLarge, ShuttingDown, TopicNotFound
from .names import check_topic, is_valid_name
from .wire import Notices

Policy = Literal["drop_oldest", "disconnect"]
Mode = Literal["sse", "ws"]
_POLICIES = {"drop_oldest": _core.DROP_OLDEST, "disconnect": _core.DISCONNECT}
_TIMEOUT = object()


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
    ) -> None:
        self.retention = retention
        self.max_payload = max_payload
        self.max_topics = max_topics
        self.auto_create = auto_create
        self._core = _core.Core(retention)
        self._waiters = itertools.count(1)
        self._subs: dict[int, Subscription] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._drain_scheduled = False
        self._shutting_down = False

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Attach to the running event loop (idempotent); subscriptions need it."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._loop is not None:
            self._loop.remove_reader(self._core.fileno())
        self._loop = loop
        self._loop_thread = threading.get_ident()
        loop.add_reader(self._core.fileno(), self._drain)

    def shutdown(self) -> None:
        """Close every subscription (each gets its ``shutdown`` notice) and refuse new work."""
        self._shutting_down = True
        self._core.shutdown()

    def close(self) -> None:
        """Shut down and detach from the loop."""
        self.shutdown()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._core.fileno())
            self._drain()
        self._loop = None

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    # -- topics ----------------------------------------------------------------------
    def create_topic(self, name: str) -> bool:
        """Create ``name``; False when it already existed."""
        check_topic(name)
        self._check_open()
        if not self._core.has_topic(name) and self._core.topic_count() >= self.max_topics:
            from .errors import LimitReached

            raise LimitReached(f"at most {self.max_topics} topics")
        return self._core.create_topic(name)

    def delete_topic(self, name: str) -> bool:
        """Delete ``name``; its subscribers get ``topic_deleted``. False when unknown."""
        return self._core.delete_topic(name)

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
        try:
            payload = orjson.dumps(data)
        except TypeError as exc:
            raise InvalidMessage(f"data is not JSON-serializable: {exc}") from None
        return self.publish_encoded(topic, payload, event)

    def publish_encoded(
        self, topic: str, payload: bytes, event: str | None = None, message_id: str = ""
    ) -> Published:
        """Publish an already JSON-encoded payload (compact, no raw newline)."""
        if event is not None and not is_valid_name(event):
            raise InvalidMessage("event names match ^[A-Za-z0-9_.-]{1,255}$")
        if len(payload) > self.max_payload:
            raise PayloadTooLarge(f"payload is {len(payload)} bytes, limit {self.max_payload}")
        if self._shutting_down:
            raise ShuttingDown("server is shutting down")
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
        if not self._drain_scheduled and self._loop is not None:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        """Wake every subscription the core reported ready (runs on the loop)."""
        self._drain_scheduled = False
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
        self._pending: list[Any] = []
        self._ready = False
        self._future: asyncio.Future[object] | None = None
        self.must_close = asyncio.Event()
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
        try:
            core_sub = self._broker._core.subscribe(
                topic, self._waiter, max(0, last_n), since, policy_code, size
            )
        except KeyError:
            raise TopicNotFound(f"no topic {topic!r}") from None
        old = self._subs.pop(topic, None)
        if old is not None:
            old.close()
        self._subs[topic] = core_sub
        if core_sub.gap:
            self._pending.append(self._notices.gap(topic, core_sub.first_available))
        self._wake()

    def remove(self, topic: str) -> bool:
        """Unsubscribe from ``topic``; False when not subscribed."""
        core_sub = self._subs.pop(topic, None)
        if core_sub is None:
            return False
        core_sub.close()
        return True

    def close(self) -> None:
        """Unsubscribe from everything (idempotent)."""
        for core_sub in self._subs.values():
            core_sub.close()
        self._subs.clear()
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
        parked = [core_sub.arm() for core_sub in self._subs.values()]
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
        sse = self._mode == "sse"
        for topic, core_sub in list(self._subs.items()):
            if topic not in self._subs:  # the connection ended earlier in this loop
                break
            data, count, dropped = core_sub.take_sse() if sse else core_sub.take_ws()
            self.received += count
            if dropped:
                self.dropped += dropped
                out.append(self._notices.dropped(topic, dropped))
            if data:
                out.append(data) if sse else out.extend(data)
            reason = core_sub.close_reason
            if reason and (reason == "slow_consumer" or core_sub.pending == 0):
                self._end_topic(topic, reason, out)
        if not sse:
            return out
        return out[0] if len(out) == 1 else b"".join(out)

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


def _resolve(future: asyncio.Future[object]) -> None:
    if not future.done():
        future.set_result(_TIMEOUT)

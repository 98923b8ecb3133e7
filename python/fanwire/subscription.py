"""One client's subscriptions: :class:`Subscription`, an async iterator of batches.

A subscription holds one core subscriber per topic (a cursor into the topic's ring) and
one waiter token: the broker's :class:`~fanwire.waker.Waker` resolves its future when the
core reports it ready, and it then takes *everything* ready in one call for all its
topics (a core ``Stream``, which merges them in id order), so a client costs one write
per wake-up. Under uvicorn an SSE subscription may instead be handed to the core's writer
thread (:meth:`Subscription.attach_socket`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from . import _core
from .enums import Mode, Policy
from .errors import TopicNotFound
from .names import check_topic
from .wire import Notices

if TYPE_CHECKING:
    from .backends.history import Replay
    from .log import Log

_TIMEOUT = object()


@dataclass(frozen=True)
class Hub:
    """What a subscription needs from its broker (given at construction, so this module
    never imports the broker)."""

    core: _core.Core
    log: Log
    retention: int
    check_open: Callable[[], None]  # raises ShuttingDown once the broker shuts down
    writer: Callable[[], _core.Writer]  # the native writer thread (created on first use)
    forget: Callable[[int], None]  # a closed subscription's waiter gets no more wake-ups
    # A topic's subscription started (True) or ended (False), for whatever reason:
    # occupancy and presence (presence.py) count on it.
    on_topic: Callable[[Subscription, str, bool], None] = lambda sub, topic, started: None


class DirectWriter(Protocol):
    """Writes a subscription's batches during the broker's wake-up round itself, with no
    task step (see :attr:`Subscription.direct`)."""

    def writable(self) -> bool:
        """Whether a batch may be written now (nothing else is writing, room is left)."""

    def write(self, batch: Any) -> None:
        """Write one batch (never blocks)."""


class CloseFlag:
    """``Subscription.must_close``: an ``asyncio.Event``'s ``set``, ``is_set`` and
    ``wait``, plus :meth:`future`.

    An Event keeps a deque of waiters from birth (about 0.7 KB), and a handler waiting on
    it from a task paid a task and its frame too: every idle connection carried all
    three. One future, made on first use and shared by every waiter, does the same.
    """

    # Slots: one lives per connection, and an instance dict costs each ~1 KB.
    __slots__ = ("_future", "_set")

    def __init__(self) -> None:
        self._set = False
        self._future: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    def future(self) -> asyncio.Future[None]:
        """Done once set. It is shared: wait for it (``asyncio.wait``), never cancel it."""
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
            if self._set:
                self._future.set_result(None)
        return self._future

    async def wait(self) -> None:
        if not self._set:
            await asyncio.shield(self.future())


class Subscription:
    """One client's subscriptions: an async iterator of batches, and a context manager.

    ``async for batch in sub`` yields everything ready at each wake-up: ``bytes`` of SSE
    frames, or a ``list[str]`` of WebSocket texts, with the protocol's notices (gap,
    dropped, topic_deleted, shutdown, slow consumer) in place. It ends on shutdown, on a
    slow-consumer disconnect, or (``end_when_empty``) when no topic is left; then
    ``close_reason`` (a ``_core.StreamEnd``) says why. Those rules, and every notice's
    bytes, are the core's (``_core.Stream``): this class only follows them.
    ``must_close`` is set as soon as the core decides to close the client, so a handler
    blocked on a stalled socket can stop waiting for it.
    """

    __slots__ = (
        "__weakref__",
        "_adding",
        "_future",
        "_held",
        "_hub",
        "_mode",
        "_notices",
        "_on_native_end",
        "_pending",
        "_policy",
        "_queue_size",
        "_ready",
        "_replays",
        "_sink",
        "_sizes",
        "_stream",
        "_subs",
        "_waiter",
        "client_id",
        "close_reason",
        "direct",
        "dropped",
        "must_close",
        "on_native_wake",
        "received",
    )

    def __init__(
        self,
        hub: Hub,
        waiter: int,
        mode: Mode,
        end_when_empty: bool,
        policy: Policy,
        queue_size: int,
    ) -> None:
        self._hub = hub
        self._waiter = waiter
        self._mode = mode
        self._notices = Notices(mode)
        self._policy = policy
        self._queue_size = queue_size
        self._subs: dict[str, _core.CoreSub] = {}
        # Every topic's subscriber, taken from merged in id order (the held ones not yet),
        # and the end-of-stream rules.
        self._stream = _core.Stream(mode.encoding, end_when_empty)
        self._held: dict[str, asyncio.Task[Replay]] = {}  # Redis mode: history on its way
        self._replays: list[tuple[str, _core.CoreSub, Replay | None]] = []  # arrived
        self._pending: list[Any] = []
        self._ready = False
        self._future: asyncio.Future[object] | None = None
        self.must_close = CloseFlag()
        # Set by a transport that can write a batch synchronously (uvicorn WebSockets):
        # a wake-up then writes it at once instead of resuming the iterating task.
        self.direct: DirectWriter | None = None
        self._sink: _core.Sink | _core.WsSink | None = None
        self._on_native_end: Callable[[], None] | None = None  # see attach_socket
        # A WebSocket the core owns (attach_ws): told of client messages on each wake-up;
        # topics added but not yet in the core's stream (their ack goes with them).
        self.on_native_wake: Callable[[], None] | None = None
        self._adding: list[tuple[_core.CoreSub, bytes]] = []
        self.close_reason: _core.StreamEnd | None = None
        self.received = 0  # messages delivered to this subscription (all topics)
        self.client_id: str | None = None  # the transport's client id (the console shows it)
        self._sizes: dict[str, int] = {}  # queue size per topic (the console's queue fill)
        self.dropped = 0  # messages dropped by its queues' drop_oldest policy

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
        policy: Policy | str | None = None,
        queue_size: int | None = None,
        since_group: Sequence[str] = (),
    ) -> None:
        """Subscribe to one more topic (re-subscribing replaces the old one).

        ``since_group``: the topics resumed together from this one ``since`` (an SSE
        stream's Last-Event-ID, an id of one of them); in Redis mode it is a point in
        time for the others, and unknown (``gap``) only if none of their streams holds it.
        """
        check_topic(topic)
        self._hub.check_open()
        policy_code = Policy.parse(policy).core if policy else self._policy.core
        size = max(1, min(queue_size or self._queue_size, self._hub.retention))
        core_sub = self._core_subscribe(topic, max(0, last_n), since, policy_code, size)
        self.remove(topic)
        self._subs[topic] = core_sub
        self._sizes[topic] = size
        self._hub.on_topic(self, topic, True)
        resumed = self._hub.log.resume(topic, core_sub, since, last_n, self._notices, since_group)
        if isinstance(resumed, list) and isinstance(self._sink, _core.WsSink):
            # The core's stream takes it with its ack (commit): nothing of it goes first.
            self._adding.append((core_sub, b"".join(resumed)))
            return
        if isinstance(resumed, list):
            self._pending.extend(resumed)
            self._stream.add(core_sub)
        else:  # history on its way (Redis): the core's messages wait for it
            self._stream.add(core_sub, held=True)
            self._held[topic] = resumed
            resumed.add_done_callback(functools.partial(self._replayed, topic, core_sub))
        self.wake()

    def _core_subscribe(
        self, topic: str, last_n: int, since: str | None, policy: _core.Policy, size: int
    ) -> _core.CoreSub:
        # (Redis mode: a topic created on another node a moment ago, not yet announced
        # here, is looked up beforehand, without blocking: Broker.aknow_topics.)
        try:
            return self._hub.core.subscribe(topic, self._waiter, last_n, since, policy, size)
        except KeyError:
            raise TopicNotFound(f"no topic {topic!r}") from None

    def _replayed(self, topic: str, core_sub: _core.CoreSub, task: asyncio.Task[Replay]) -> None:
        """History from Redis arrived: queue it, then let the core go on after it."""
        if self._held.get(topic) is not task:
            return
        del self._held[topic]
        self._replays.append((topic, core_sub, None if task.cancelled() else task.result()))
        self._release()

    def _release(self) -> None:
        """Once every history on its way arrived: queue them merged in id order (several
        topics), then let the core go on after them."""
        if self._held or not self._replays:
            return
        from .backends.history import merge  # Redis mode only (imports redis)

        arrived = [(t, c, r) for t, c, r in self._replays if self._subs.get(t) is c]
        self._replays = []
        items, ended = merge([(c, r) for _, c, r in arrived if r is not None])
        self._pending.extend(items)
        for _, c, _ in arrived:
            self._stream.release(c)
        for c in ended:  # their `end` is in the history: the core lets them go now
            self._stream.mark_ended(c)
        if ended:
            self._take(self._pending)  # (before a native writer could take them over)
        self.wake()

    @property
    def mode(self) -> Mode:
        return self._mode

    def queues(self) -> list[tuple[str, int, int]]:
        """``(topic, messages waiting, queue size)`` of each topic (the console's lag)."""
        return [(t, c.pending, self._sizes.get(t, 1)) for t, c in self._subs.items()]

    @property
    def ended_by(self) -> _core.StreamEnd | None:
        """Why it ended, once known: ``slow_consumer`` when one of its queues overflowed
        (a native stream's too, which Python only learns of at :meth:`close`)."""
        if self.close_reason is None and any(
            c.close_reason == _core.CloseReason.slow_consumer for c in self._subs.values()
        ):
            return _core.StreamEnd.slow_consumer
        return self.close_reason

    def set_join_leave(self, topic: str) -> None:
        """Receive ``topic``'s presence join/leave notices (the core queues them in
        place: ``Core.notify``)."""
        core_sub = self._subs.get(topic)
        if core_sub is not None:
            core_sub.join_leave = True

    def inject_gap(self, topic: str, first_available: str | None) -> None:
        """Queue a gap notice for ``topic`` after what its core queue holds now."""
        core_sub = self._subs.get(topic)
        if core_sub is None:
            return
        if self._sink is not None:  # the native writer owns the queue: it sends the notice
            self._sink.inject(self._notices.gap(topic, first_available))  # type: ignore[arg-type]
            return
        if topic not in self._held:
            self._take(self._pending)  # every topic: the stream stays in id order
        self._pending.append(self._notices.gap(topic, first_available))
        self.wake()

    def end_for_shutdown(self) -> bytes | str | None:
        """The server shuts down: if no topic is left for the core's shutdown to end (a
        WebSocket that never subscribed), the stream ends now and this is its shutdown
        notice to send; None otherwise (the core's shutdown ends it as it ends others)."""
        notice = self._stream.end_for_shutdown()
        if notice is not None and self.close_reason is None:
            self.close_reason = _core.StreamEnd.shutdown
        return notice

    def remove(self, topic: str) -> bool:
        """Unsubscribe from ``topic``; False when not subscribed."""
        core_sub = self._subs.pop(topic, None)
        if core_sub is None:
            return False
        self._held.pop(topic, None)  # a replay on its way is dropped, not cancelled:
        if isinstance(self._sink, _core.WsSink):  # what was ready goes out, then nothing
            self._sink.unsubscribe(core_sub, b"")
            self._adding = [(c, n) for c, n in self._adding if c is not core_sub]
        core_sub.close()  # redis-py may never finish a cancelled command
        self._stream.remove(core_sub)
        self._release()  # the others may have waited for this one
        self._hub.on_topic(self, topic, False)
        return True

    def backlog(self, topics: Collection[str]) -> int:
        """Messages of ``topics`` ready for this subscription but not taken yet."""
        return sum(sub.pending for topic, sub in self._subs.items() if topic in topics)

    async def replayed(self) -> None:
        """Wait until the history on its way from Redis (a resume) was queued."""
        while self._held:
            await asyncio.wait(list(self._held.values()))

    @property
    def native_ready(self) -> bool:
        """Whether :meth:`attach_socket` may be used now (SSE, no history on its way, not
        ended: e.g. by the ``end`` of its only topic in a history)."""
        return (
            self._mode is Mode.sse
            and not self._held
            and self._sink is None
            and self.close_reason is None
        )

    def attach_socket(
        self,
        fd: int,
        heartbeat: float,
        close_grace: float = 5.0,
        on_end: Callable[[], None] | None = None,
    ) -> _core.Sink:
        """Hand this SSE subscription to the native writer, which from now on owns the
        connection on ``fd`` (closed by the core): it writes the frames (as HTTP/1.1
        chunks), reads the socket to see the client leave, and finishes the response (or
        resets it, stuck ``close_grace`` seconds after its end). Do not iterate the
        subscription afterwards. Once the core closed the socket, this subscription
        closes itself (its topics' presence and counts follow) and calls ``on_end``."""
        assert self.native_ready and self._sink is None
        preamble = b"".join(self._pending)
        self._pending = []
        subs = list(self._subs.values())
        for core_sub in subs:
            self._stream.remove(core_sub)  # the sink's own stream takes from them now
        self._on_native_end = on_end
        writer = self._hub.writer()
        sink = writer.attach(subs, fd, preamble, heartbeat, self._waiter, close_grace)
        self._sink = sink
        return sink

    def attach_ws(
        self,
        fd: int,
        *,
        max_message: int,
        ping_interval: float,
        ping_timeout: float,
        heartbeat: float,
        close_grace: float,
        on_end: Callable[[], None],
    ) -> _core.WsSink:
        """Hand this WebSocket subscription (ready-made frames, no topic yet) to the native
        writer, which from now on owns the connection on ``fd`` (closed by the core): it
        writes every frame, reads and parses the client's, answers pings, keeps the
        connection alive and closes it. Python queues its replies with :meth:`commit`
        and drains client messages on :attr:`on_native_wake`. Once the core closed the
        socket, this subscription closes itself and calls ``on_end``."""
        assert self._mode is Mode.ws_frames and self._sink is None and not self._subs
        self._on_native_end = on_end
        sink = self._hub.writer().attach_ws(
            fd, self._waiter, max_message, ping_interval, ping_timeout, heartbeat, close_grace
        )
        self._sink = sink
        return sink

    def commit(self, frames: bytes) -> None:
        """A native WebSocket: queue ``frames`` (the reply to one client message). The
        topics that message subscribed to join the core's stream with it, at once, so
        their ack precedes every event of theirs."""
        sink = self._sink
        assert isinstance(sink, _core.WsSink)
        adding, self._adding = self._adding, []
        for core_sub, notices in adding:
            if not sink.subscribe(core_sub, frames + notices):
                core_sub.close()  # the connection ended meanwhile
            frames = b""
        if frames:
            sink.send(frames)

    def _native_done(self, sink: _core.Sink | _core.WsSink) -> None:
        """The core closed a handed-off connection: follow its end, then tell the owner."""
        if self.close_reason is None:
            self.close_reason = sink.end
        self.close()
        on_end, self._on_native_end = self._on_native_end, None
        if on_end is not None:
            on_end()

    def close(self) -> None:
        """Unsubscribe from everything (idempotent)."""
        if self.close_reason is None and self.ended_by == _core.StreamEnd.slow_consumer:
            self.close_reason = self.ended_by  # (a native stream's queue overflowed)
        if self._sink is not None:
            self._sink.close()
        for core_sub in self._subs.values():
            core_sub.close()
        ended = list(self._subs)
        self._subs.clear()
        self._stream.close()
        for topic in ended:
            self._hub.on_topic(self, topic, False)
        self._held.clear()  # replays on their way are dropped (see remove)
        self._replays.clear()
        self._hub.forget(self._waiter)
        if self.close_reason is None:
            self.close_reason = _core.StreamEnd.closed
        self.wake()

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
        return self.close_reason is not None  # set by the core's rules (see _take)

    def _park(self) -> bool:
        """Ask every topic to wake us on its next message; False if something is ready."""
        if self._ready:
            return False
        return self._stream.arm()  # the held topics are not in it: their history comes first

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

    def wake(self, closing: bool = False) -> None:
        """Something is ready (the broker's wake-up round; ``closing``: the core is closing
        this client)."""
        sink = self._sink
        if closing and sink is not None and sink.done and self.close_reason is None:
            self._native_done(sink)  # (an earlier closing wake is a topic's, not the end)
            return
        self._ready = True
        if closing:
            self.must_close.set()
        elif self._sink is not None:
            self._follow_native()
            if self.on_native_wake is not None:
                self.on_native_wake()
        future = self._future
        if future is None or future.done():
            return
        direct = self.direct
        if direct is not None and not closing and self._write_direct(direct):
            return
        future.set_result(None)

    def _follow_native(self) -> None:
        """The native writer's stream let topics go (it wakes us then): forget them."""
        left = (_core.CloseReason.unsubscribed, _core.CloseReason.topic_deleted)
        for topic, core_sub in list(self._subs.items()):
            if core_sub.close_reason in left:  # (a slow consumer ends it all: close)
                del self._subs[topic]
                self._hub.on_topic(self, topic, False)

    def _write_direct(self, direct: DirectWriter) -> bool:
        """While the iterating task is parked, write what is ready through ``direct`` and
        park again. False: the task must run (not writable, ended, or more came meanwhile).

        Profiling 5,000 WebSocket clients showed a task step per client and wake-up
        (future, timer, lock, write, re-park) to cost about 17 us; this costs a third.
        """
        if not direct.writable():
            return False
        batch = self._collect()
        if batch:
            direct.write(batch)
        return not self._finished() and self._park()

    def _collect(self) -> Any:
        """Take everything ready from every topic, with notices in protocol order."""
        self._ready = False
        out = self._pending
        self._pending = []
        self._take(out)
        if self._mode is Mode.ws:
            return out
        return out[0] if len(out) == 1 else b"".join(out)

    def _take(self, out: list[Any]) -> None:
        """Append what every topic has ready, in id order (every notice in place: drops,
        deletions, the end), to ``out``: one core call for the whole connection."""
        batch = self._stream.take()
        self.received += batch.messages
        self.dropped += batch.dropped
        if self._mode is Mode.ws:
            out.extend(batch.texts)
        elif batch.data:
            out.append(batch.data)
        if batch.topics or not self._subs:  # a topic ended, or none is left: rare
            self._follow_ends(batch)

    def _follow_ends(self, batch: _core.Batch) -> None:
        """Forget the topics the core's stream let go of; once it ended, why."""
        for note in batch.topics:
            if note.ended and note.topic in self._subs:
                self._subs.pop(note.topic).close()
                self._hub.on_topic(self, note.topic, False)
        end = self._stream.end
        if end != _core.StreamEnd.none and self.close_reason is None:
            self.close_reason = end  # the stream closed every subscriber, held ones too
            ended = list(self._subs)
            self._subs.clear()
            self._held.clear()
            self._replays.clear()
            for topic in ended:
                self._hub.on_topic(self, topic, False)


def _resolve(future: asyncio.Future[object]) -> None:
    if not future.done():
        future.set_result(_TIMEOUT)

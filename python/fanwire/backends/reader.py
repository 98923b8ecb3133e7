"""The per-process reader: one task follows the control stream and every local topic's
stream with ``XREAD BLOCK`` and feeds each entry to the local C++ core.

Local fan-out then stays in C++: an entry crosses into the core once, with its stream id
as the message id, and the core wakes this process's subscribers in batches. Entries are
fed in key order across streams (ids increase in publish order across topics), so a
stream of several topics is in id order (:meth:`StreamReader._feed_in_order`). A topic
followed late (created elsewhere, learnt of while other streams were being read) joins
that order: nothing of it at or before what was already fed is fed (it is history, in
Redis), and the other streams wait for its first read.

Continuity: each entry carries its topic's publish count ``s`` (:mod:`.scripts`). A
reader that fell more than the retention behind (a paused process, a slow Redis) finds
``s`` jumping from n to m: the m-n-1 entries in between were trimmed before it read them.
It then announces a ``gap`` to every local subscriber of the topic (``first_available``:
the entry after the hole) before feeding that entry, so a loss is never silent.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.typing import KeyT, StreamIdT

from .. import _core
from .ids import ZERO, StreamKey, as_text, parse_id
from .scripts import Keys

log = logging.getLogger("fanwire.redis")

Entries = list[tuple[bytes, dict[bytes, bytes]]]
_MAX_KEY = 2**64  # beyond any stream id's ms part
#: Catching up, the reader polls every CATCH_UP_POLL seconds whether its subscribers took
#: a batch (see _let_subscribers_take), CATCH_UP_WAIT at most (a loop far too busy).
CATCH_UP_POLL = 0.002
CATCH_UP_WAIT = 5.0


class StreamReader:
    """Positions (last id read) per followed stream, and the loop that advances them."""

    def __init__(
        self,
        core: _core.Core,
        drain: Callable[[], None],
        keys: Keys,
        client: aioredis.Redis,
        *,
        count: int = 500,
        block_ms: int = 1000,
        announce_gap: Callable[[str, str | None], None] | None = None,
        backlog: Callable[[Collection[str]], int] | None = None,
        rounds: Callable[[], int] | None = None,
    ) -> None:
        self.core = core
        self.drain = drain
        self.announce_gap = announce_gap or (lambda topic, first: None)
        #: messages fed but not yet taken by the local subscribers of some topics.
        self.backlog = backlog or (lambda topics: 0)
        #: wake-up rounds the broker started so far.
        self.rounds = rounds or (lambda: 0)
        self.keys = keys
        self.client = client
        self.count = count
        self.block_ms = block_ms
        #: topic -> id of the last entry fed to the core ("0-0": none yet).
        self.positions: dict[str, str] = {}
        #: topic -> the position the reader started from: the local ring never holds
        #: anything at or before it, so older resumes read their history from Redis.
        self.feed_start: dict[str, StreamKey] = {}
        #: topic -> publish count (``s``) of the entry at the position: 0 before the first
        #: entry of a new stream, None when unknown (the next entry is taken as it comes).
        self.counts: dict[str, int | None] = {}
        #: topic -> id of the first entry fed after the latest hole: a resume from an id
        #: before it cannot be served from the local ring alone.
        self.hole_end: dict[str, StreamKey] = {}
        #: topic -> this process's subscribers when its last message was fed.
        self.subscribers: dict[str, int] = {}
        #: topic -> the newest key fed to the core (of any topic) when it was followed:
        #: its entries up to there are older than what subscribers already got, so they
        #: are read past, not fed (a stream of several topics stays in id order).
        self.floor: dict[str, StreamKey] = {}
        #: the newest key fed to the core, across topics.
        self.fed: StreamKey = ZERO
        #: id of the last control notice applied.
        self.control = "0-0"
        self._waiters: list[tuple[StreamKey, asyncio.Future[None]]] = []
        #: (retention, max_age, conflate_key, cache) of a topic created here (its options).
        self.shape: Callable[[str], tuple[int, float, str, bool]] = _core_defaults
        #: a create notice's options (JSON given to create_topic, "" none: also on delete).
        self.on_options: Callable[[str, str], None] = lambda topic, options: None
        #: a topic was deleted here (by any node): its local subscriptions ended. A native
        #: SSE stream whose socket is full takes nothing, so it could not tell (presence).
        self.on_forget: Callable[[str], None] = lambda topic: None

    # -- what is followed --------------------------------------------------------------
    def follow(self, topic: str, after: str, count: int | None = None) -> None:
        """Create ``topic`` locally (if needed) and read its stream after ``after``, the
        entry whose publish count is ``count`` (0: a new stream; None: unknown)."""
        if not self.core.has_topic(topic):
            self.core.create_topic(topic, *self.shape(topic))
        if topic not in self.positions:
            self.positions[topic] = after
            start = parse_id(after) or ZERO
            if self.fed > start:
                self.floor[topic] = self.fed
            self.feed_start[topic] = max(start, self.fed)
            self.counts[topic] = count

    def forget(self, topic: str) -> None:
        """Stop reading ``topic`` and delete it locally (its subscribers are told)."""
        self.positions.pop(topic, None)
        self.feed_start.pop(topic, None)
        self.floor.pop(topic, None)
        self.counts.pop(topic, None)
        self.hole_end.pop(topic, None)
        self.subscribers.pop(topic, None)
        self.on_options(topic, "")  # a topic created anew under its name starts afresh
        self.core.delete_topic(topic)
        self.on_forget(topic)

    def mark_hole(self, topic: str) -> None:
        """Entries after the position are lost (e.g. Redis restarted empty): until the
        next entry is fed, no resume can be served from the local ring alone."""
        self.hole_end[topic] = (_MAX_KEY, 0)

    def last_fed(self, topic: str) -> StreamKey | None:
        position = self.positions.get(topic)
        return None if position is None else parse_id(position)

    # -- reading -----------------------------------------------------------------------
    async def read_once(self) -> None:
        """One ``XREAD BLOCK`` over the control stream and every followed stream."""
        streams: dict[KeyT, StreamIdT] = {self.keys.control: self.control}
        streams.update({self.keys.stream(t): p for t, p in self.positions.items()})
        requested = set(self.positions)
        reply = await self.client.xread(streams, count=self.count, block=self.block_ms)
        items = reply.items() if isinstance(reply, dict) else reply or ()
        behind = self.apply(items, requested)
        if behind:
            await self._let_subscribers_take(behind)

    async def _let_subscribers_take(self, topics: set[str]) -> None:
        """The reader is catching up (a full batch): before feeding more, let the local
        subscribers take what they got. Fed in one go, a backlog larger than their queues
        would be dropped, though Redis still holds it. One whole wake-up round gives every
        subscriber that keeps up its chance: what is left after it belongs to stalled
        ones (their policy applies), which so hold the reader back one round at most."""
        seen = self.rounds()
        deadline = asyncio.get_running_loop().time() + CATCH_UP_WAIT
        while self.backlog(topics) and self.rounds() - seen < 2:
            if asyncio.get_running_loop().time() > deadline:
                return
            self.drain()  # a round comes even if no subscriber asked for one
            await asyncio.sleep(CATCH_UP_POLL)

    def apply(self, reply: Iterable[Any], requested: Collection[str] | None = None) -> set[str]:
        """Apply control notices first, then feed the messages of the other streams;
        the topics whose batch was full (more is waiting in their streams).

        ``requested``: the topics the read asked for. One followed since (adopted while
        the read was out, or created by a notice of this reply) was not read: its entries
        may be older than the others' in this reply, so those wait for the next read,
        which includes it (see :meth:`_feed_in_order`)."""
        batches = [(as_text(key), entries) for key, entries in reply]
        touched: set[str] = set()
        for key, entries in batches:
            if key == self.keys.control:
                touched |= self._apply_control(entries)
        streams: list[tuple[str, Entries]] = []
        behind: set[str] = set()
        for key, entries in batches:
            topic = self.keys.topic_of(key)
            if key != self.keys.control and topic not in touched and topic in self.positions:
                streams.append((topic, entries))
                if len(entries) >= self.count:
                    behind.add(topic)
        unread = set() if requested is None else set(self.positions) - set(requested)
        unread |= touched & set(self.positions)
        if self._feed_in_order(streams, behind, unread):
            self.drain()
        self._wake_waiters()
        return behind

    def _feed_in_order(
        self, streams: list[tuple[str, Entries]], behind: set[str], unread: Collection[str] = ()
    ) -> bool:
        """Feed the entries of every stream merged by key, up to the largest key that no
        stream can still bring a smaller one than (ids increase in publish order across
        topics: :mod:`.scripts`). XREAD returned each stream's entries after its position,
        COUNT at most: a stream with fewer has nothing more (nothing older can come, only
        later publishes), so only the full ones bound it, by their last entry. What is
        above the bound stays in Redis and is read again next time (a position is the last
        entry fed), so the core gets every topic in key order and a take over several
        topics stops at the newest key fed (``IdPolicy::visible``): a multi-topic stream is
        in id order, and its last id resumes every topic (PROTOCOL.md). At least one full
        batch is fed each time; with none full, everything is. A followed topic that was
        not read (``unread``) bounds it by where it starts: the next read has it."""
        bounds = [parse_id(entries[-1][0]) for topic, entries in streams if topic in behind]
        bounds += [self._start_of(topic) for topic in unread]
        watermark = min((b for b in bounds if b is not None), default=None)
        runs = [
            [
                (key, topic, raw_id, fields)
                for raw_id, fields in entries
                if (key := parse_id(raw_id))
            ]
            for topic, entries in streams
        ]
        run: _Run | None = None  # consecutive entries of one topic, fed in one call
        must_drain = False
        for key, topic, raw_id, fields in heapq.merge(*runs, key=lambda entry: entry[0]):
            if watermark is not None and key > watermark:
                break
            if run is None or run.topic != topic:
                must_drain |= self._flush(run)
                run = None
                if topic not in self.positions:
                    continue
                run = _Run(topic, parse_id(self.positions[topic]) or ZERO)
            must_drain |= self._take(run, key, raw_id, fields)
        return self._flush(run) | must_drain

    def _start_of(self, topic: str) -> StreamKey:
        """The key after which ``topic``'s next entry to feed can be."""
        position = parse_id(self.positions[topic]) or ZERO
        return max(position, self.floor.get(topic, ZERO))

    def _apply_control(self, entries: Entries) -> set[str]:
        """Create/delete local topics in notice order; the topics touched."""
        touched: set[str] = set()
        for raw_id, fields in entries:
            self.control = as_text(raw_id)
            op, topic = as_text(fields.get(b"op", b"")), as_text(fields.get(b"topic", b""))
            if not topic:
                continue
            touched.add(topic)
            if op == "create":
                self.on_options(topic, as_text(fields.get(b"options", b"")))
                self.follow(topic, "0-0", 0)  # the script emptied the stream and its count
            elif op == "delete":
                self.forget(topic)
        return touched

    def _take(self, run: _Run, key: StreamKey, raw_id: bytes, fields: dict[bytes, bytes]) -> bool:
        """Add one entry (if newer than the position) to ``run``; whether a wake-up round
        is due (a gap before it made the run so far go first)."""
        topic = run.topic
        if key <= run.after or topic not in self.positions:
            return False
        run.after = key
        message_id = as_text(raw_id)
        if key <= self.floor.get(topic, ZERO):  # older than what was fed: history only
            # (nothing of the run is pending: the floor lies below every key it feeds)
            self.counts[topic] = _count(fields)
            self.positions[topic] = message_id
            return False
        must_drain = False
        if self._check_continuity(topic, message_id, key, _count(fields)):
            must_drain = self._flush(run)  # what came before the hole, then the notice
            self.announce_gap(topic, message_id)
        ts = float(fields.get(b"t", b"0") or 0)  # the publisher's time, as in history
        run.add(key, message_id, fields.get(b"d", b"null"), as_text(fields.get(b"e", b"")), ts)
        return must_drain

    def _flush(self, run: _Run | None) -> bool:
        """Publish ``run``'s entries to the local core in one call (one wake-up)."""
        if run is None or not run.ids:
            return False
        topic = run.topic
        try:
            result = self.core.publish_many(
                topic, run.data, run.events, True, ids=run.ids, stamps=run.stamps
            )
        except KeyError:  # deleted meanwhile
            self.positions.pop(topic, None)
            self.counts.pop(topic, None)
            run.clear()
            return False
        except ValueError:  # a malformed entry refuses the whole run: one by one
            return self._feed_one_by_one(run)
        self.subscribers[topic] = result.subscribers
        self._fed(run)
        return result.must_drain

    def _feed_one_by_one(self, run: _Run) -> bool:
        """Publish ``run``'s entries one at a time, skipping (and logging) the bad ones."""
        must_drain = False
        entries = zip(run.ids, run.data, run.events, run.stamps, strict=True)
        for message_id, data, event, ts in entries:
            try:
                result = self.core.publish(run.topic, data, event, message_id, True, ts)
            except ValueError as exc:
                log.warning(
                    "skipping malformed entry %s of topic %r: %s", message_id, run.topic, exc
                )
                continue
            self.subscribers[run.topic] = result.subscribers
            must_drain |= result.must_drain
        self._fed(run)
        return must_drain

    def _fed(self, run: _Run) -> None:
        self.positions[run.topic] = run.ids[-1]
        self.fed = max(self.fed, run.last)
        run.clear()

    def _check_continuity(
        self, topic: str, message_id: str, key: StreamKey, count: int | None
    ) -> bool:
        """Whether entries between the position and this one are gone (a gap is due)."""
        last = self.counts.get(topic)
        self.counts[topic] = count
        if self.hole_end.get(topic, ZERO)[0] == _MAX_KEY:  # the hole marked before this
            self.hole_end[topic] = key
        if count is None or last is None or count == last + 1:
            return False
        # A jump: trimmed before this node read them. A count that went back: the
        # stream was recreated behind our back (Redis lost its data): not provable either.
        missing = count - last - 1 if count > last else None
        log.warning(
            "topic %r: %s entries before %s were trimmed before this node read them "
            "(its reader fell more than the retention behind); subscribers get a gap",
            topic,
            "some" if missing is None else missing,
            message_id,
        )
        self.hole_end[topic] = key
        return True

    # -- read-your-writes for topic creation and deletion ------------------------------
    async def caught_up(self, control_id: str, timeout: float) -> bool:
        """Wait until the control notice ``control_id`` (or a later one) was applied."""
        key = parse_id(control_id) or ZERO
        if (parse_id(self.control) or ZERO) >= key:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((key, future))
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return False
        finally:
            self._waiters = [(k, f) for k, f in self._waiters if f is not future]
        return True

    def _wake_waiters(self) -> None:
        if not self._waiters:
            return
        applied = parse_id(self.control) or ZERO
        for key, future in self._waiters:
            if key <= applied and not future.done():
                future.set_result(None)


@dataclass
class _Run:
    """Consecutive entries of one topic (in key order) to feed the core in one call."""

    topic: str
    after: StreamKey  # the last key taken (fed, to be fed, or read past)
    last: StreamKey = ZERO  # the last key to be fed
    ids: list[str] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)

    def add(self, key: StreamKey, message_id: str, data: bytes, event: str, ts: float) -> None:
        self.last = key
        self.ids.append(message_id)
        self.data.append(data)
        self.events.append(event)
        self.stamps.append(ts)

    def clear(self) -> None:
        self.ids, self.data, self.events, self.stamps = [], [], [], []


def _count(fields: dict[bytes, bytes]) -> int | None:
    """The entry's publish count ``s``, or None (an entry written without one)."""
    raw = fields.get(b"s")
    return int(raw) if raw is not None and raw.isdigit() else None


def _core_defaults(name: str) -> tuple[int, float, str, bool]:
    """(retention, max_age, conflate_key, cache) meaning "the core's defaults"."""
    return 0, 0.0, "", False

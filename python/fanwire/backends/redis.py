"""Scale-out over Redis Streams: :class:`RedisBackend`, used by :class:`fanwire.Broker`
when it is given a Redis URL (``FANWIRE_REDIS_URL`` or ``python -m fanwire --redis``).

- A publish is an ``XADD`` (``MAXLEN ~ retention``) to the topic's stream, acknowledged
  only once Redis accepted it; the stream id is the message id on every node.
- Each process runs one reader task (:mod:`.reader`) feeding its local core; entries
  trimmed before it read them (it fell more than the retention behind) are announced to
  its subscribers as a ``gap``, found exactly by each entry's publish count.
- Topics live in a Redis set; creations and deletions are notices on a control stream
  that every reader applies in order (:mod:`.scripts`).
- Resume on any node reads what the local ring lacks from the stream (:mod:`.history`).

Faults. Redis unreachable at start: the server starts anyway, logs the error and retries
with backoff (0.2 s doubling to 5 s); until it connects, publishes and topic changes fail
with :class:`~fanwire.backends.BackendUnavailable` (HTTP 503, WebSocket ``INTERNAL``) and
no topic is known: subscribing to one answers 503 too, not "no such topic". A starting
server waits for the first attempt (:meth:`RedisBackend.first_attempt`) before it serves,
so it answers for a topic only once it loaded the registry. Redis lost while running: the
same errors, client connections stay open (heartbeats are local); on reconnection the
reader goes on from the last id it read per stream, and announces a ``gap`` to the
subscribers of a topic whose stream lost entries meanwhile (trimmed: the publish counts
tell; or lost by a Redis restart without persistence: the last id is gone). If Redis came
back empty (its run id changed), each node puts its topics back in the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.lock import Lock

from .. import _core
from ..errors import LimitReached
from ..wire import Notices
from . import BackendUnavailable
from .commands import DOWN, Commands, client_options
from .history import Replay, Resumer
from .ids import as_text, parse_id
from .reader import StreamReader
from .scripts import Keys

log = logging.getLogger("fanwire.redis")
if not log.handlers and not logging.getLogger().handlers:
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    log.addHandler(_handler)
    log.setLevel(logging.INFO)

#: Seconds a topic creation or deletion waits for this node's reader to apply it.
APPLY_TIMEOUT = 5.0
#: Seconds a starting node waits for its first connection attempt (each command of it
#: times out on its own: this only bounds the whole).
STARTUP_WAIT = 10.0
BACKOFF = (0.2, 5.0)
T = TypeVar("T")


class RedisBackend:
    """The shared log of one process's broker (see the module docstring)."""

    def __init__(
        self,
        core: _core.Core,
        drain: Callable[[], None],
        announce_gap: Callable[[str, str | None], None],
        url: str,
        *,
        retention: int,
        max_topics: int,
        prefix: str = "fanwire",
        backlog: Callable[[Collection[str]], int] | None = None,
        rounds: Callable[[], int] | None = None,
    ) -> None:
        self.url = redact(url)  # for logs: never a password
        self.keys = Keys(prefix)
        self.commands = Commands(url, self.keys, retention, max_topics)
        block_ms = 1000
        client = aioredis.Redis.from_url(url, **client_options(block_ms / 1000 + 5.0))
        # A batch at most half the retention (and a default SSE queue): a catch-up then
        # never overflows the ring or the queues of subscribers that keep up.
        self.reader = StreamReader(
            core,
            drain,
            self.keys,
            client,
            count=max(1, min(100, retention // 2)),
            block_ms=block_ms,
            announce_gap=announce_gap,
            backlog=backlog,
            rounds=rounds,
        )
        # MAXLEN ~ keeps a little more than `retention`: deliver all the stream holds.
        self.resumer = Resumer(self.commands, self.reader, 2 * retention + 1000)
        self.announce_gap = announce_gap
        self.ready = False
        #: Set once the registry was first loaded: before, a local miss proves nothing.
        self.loaded = asyncio.Event()
        #: Set once the first connection attempt ended (loaded, or failed).
        self.attempted = asyncio.Event()
        self._resync = False  # a command failed: check the connection and recover
        self._stopping = False
        self._run_id: str | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the reader task on the running loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the reader and close the connections.

        The reader is stopped by closing its connection, not by cancelling it: redis-py
        (8.1) sometimes never finishes a cancelled ``XREAD``.
        """
        self.ready = False
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            await self.reader.client.connection_pool.disconnect()
            done, _ = await asyncio.wait({task}, timeout=3.0)
            if not done:
                task.cancel()
                await asyncio.wait({task}, timeout=2.0)
            if task.done() and not task.cancelled():
                with contextlib.suppress(Exception):
                    task.result()
        await self.reader.client.aclose()
        await self.commands.close()

    async def _run(self) -> None:
        """Connect (retrying with backoff), then read until Redis is lost; repeat."""
        delay = BACKOFF[0]
        while not self._stopping:
            try:
                await self._connect()
                delay = BACKOFF[0]
                while not (self._resync or self._stopping):
                    await self.reader.read_once()
                continue
            except DOWN as exc:
                self.attempted.set()
                if self._stopping:
                    return
                self._down(exc, delay)
            except Exception:
                self.attempted.set()
                if self._stopping:
                    return
                log.exception("Redis reader failed; restarting it in %.1fs", delay)
                self.ready = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF[1])

    def _down(self, exc: BaseException, delay: float) -> None:
        level = logging.ERROR if self.ready or self._run_id is None else logging.WARNING
        self.ready = False
        log.log(
            level,
            "Redis at %s is unavailable (%s); publishes answer 503 until it is back; "
            "retrying in %.1fs",
            self.url,
            exc,
            delay,
        )

    async def _connect(self) -> None:
        """First connection: load the registry. Later ones: recover (see module doc)."""
        self._resync = False
        run_id = await self.commands.run_id()
        if self._run_id is None:
            await self._bootstrap()
            log.info("connected to Redis at %s (%d topics)", self.url, len(self.reader.positions))
        else:
            await self._recover(restarted=run_id != self._run_id)
            log.info("Redis at %s is back; reading on from the last ids seen", self.url)
        self._run_id = run_id
        self.ready = True
        self.loaded.set()
        self.attempted.set()

    async def first_attempt(self, timeout: float = STARTUP_WAIT) -> None:
        """Wait (``timeout`` at most) until the first connection attempt ended: then the
        node knows the cluster's topics, or Redis did not answer (see :meth:`adopt`). A
        server awaits it before it serves, so it never answers for topics not loaded."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.attempted.wait(), timeout)

    async def _bootstrap(self) -> None:
        control, topics = await self.commands.snapshot()
        lasts = await self.commands.last_ids(topics)
        self.reader.control = control
        for topic in topics:
            self.reader.follow(topic, *lasts[topic])

    async def _recover(self, restarted: bool) -> None:
        if restarted:
            await self.commands.reregister(sorted(self.reader.positions))
        await self._sync_topics()
        for topic, position in list(self.reader.positions.items()):
            # Redis kept its data: the publish counts tell the reader of any hole.
            if position == "0-0" or (not restarted and self.reader.counts.get(topic) is not None):
                continue
            present, first = await self.commands.still_has(topic, position)
            newer = first is None or (parse_id(first) or (0, 0)) > (parse_id(position) or (0, 0))
            if not present and (newer or restarted):
                log.warning("topic %r: entries after %s may be lost; gap", topic, position)
                self.reader.mark_hole(topic)
                self.announce_gap(topic, first)
            if restarted:  # its publish counts restarted too (or went back to a snapshot)
                self.reader.counts[topic] = 0 if first is None else None

    async def _sync_topics(self) -> None:
        """Match the local topics to the registry, in case control notices were missed
        (trimmed from the control stream while this node was cut off)."""
        _, registered = await self.commands.snapshot()
        for topic in set(self.reader.positions) - set(registered):
            self.reader.forget(topic)
        for topic in set(registered) - set(self.reader.positions):
            self.reader.follow(topic, "0-0")

    def lease(self, name: str, ttl: float) -> Lock:
        """A lock that one node at a time holds for ``ttl`` seconds unless renewed
        (redis-py's ``Lock``): e.g. the demo producer runs once across workers and hosts."""
        return self.commands.client.lock(self.keys.lease(name), timeout=ttl, blocking=False)

    # -- the broker's operations -------------------------------------------------------
    def _check_ready(self, what: str) -> None:
        if not self.ready:
            raise BackendUnavailable(f"{what}: Redis is unavailable")

    async def publish(self, topic: str, payload: bytes, event: str) -> str | None:
        """The id Redis gave the message, or None when the topic does not exist."""
        self._check_ready("publish")
        return await self._guard(self.commands.publish(topic, payload, event))

    def publish_sync(self, topic: str, payload: bytes, event: str) -> str | None:
        self._check_ready("publish")
        return self._guard_sync(lambda: self.commands.publish_sync(topic, payload, event))

    def submit_publish(self, topic: str, payload: bytes, event: str) -> asyncio.Future[str | None]:
        """:meth:`publish` without awaiting it: queued for the next pipeline (in submission
        order), the future of its id (None: no such topic; BackendUnavailable if down)."""
        self._check_ready("publish")
        raw = self.commands.submit_publish(topic, payload, event)
        done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

        def settle(raw: asyncio.Future[Any]) -> None:
            if done.cancelled():
                return
            exc = raw.exception()
            if exc is not None:
                if isinstance(exc, BackendUnavailable):
                    self._failed()
                done.set_exception(exc)
            else:
                done.set_result(None if raw.result() is None else as_text(raw.result()))

        raw.add_done_callback(settle)
        return done

    async def publish_many(self, topic: str, items: list[tuple[bytes, str]]) -> list[str] | None:
        """A batch ((payload, event) pairs) in order, in one script call (atomic): the
        ids, or None when the topic does not exist (then nothing was added)."""
        self._check_ready("publish")
        return await self._guard(self.commands.publish_many(topic, items))

    def publish_many_sync(self, topic: str, items: list[tuple[bytes, str]]) -> list[str] | None:
        self._check_ready("publish")
        return self._guard_sync(lambda: self.commands.publish_many_sync(topic, items))

    async def publish_once(
        self, topic: str, payload: bytes, event: str, key: str, window: float, max_keys: int
    ) -> tuple[str, bool] | None:
        """(id, repeat) of an idempotent publish (Commands.publish_once)."""
        self._check_ready("publish")
        pending = self.commands.publish_once(topic, payload, event, key, window, max_keys)
        return await self._guard(pending)

    def publish_once_sync(
        self, topic: str, payload: bytes, event: str, key: str, window: float, max_keys: int
    ) -> tuple[str, bool] | None:
        self._check_ready("publish")
        return self._guard_sync(
            lambda: self.commands.publish_once_sync(topic, payload, event, key, window, max_keys)
        )

    async def create_topic(self, name: str) -> bool:
        """Register ``name`` everywhere; True when it is new. Returns once applied here."""
        self._check_ready("create topic")
        status, control = await self._guard(self.commands.create(name))
        if status < 0:
            raise LimitReached(f"at most {self.commands.max_topics} topics")
        await self._applied(control)
        if name not in self.reader.positions:  # this node's reader is late: go ahead
            self.reader.follow(name, "0-0", 0 if status == 1 else None)
        return status == 1

    def create_topic_sync(self, name: str) -> bool:
        self._check_ready("create topic")
        status = self._guard_sync(lambda: self.commands.create_sync(name))
        if status < 0:
            raise LimitReached(f"at most {self.commands.max_topics} topics")
        self.reader.follow(name, "0-0", 0 if status == 1 else None)
        return status == 1

    async def delete_topic(self, name: str) -> bool:
        """Unregister ``name`` everywhere; each node's subscribers get ``topic_deleted``."""
        self._check_ready("delete topic")
        deleted, control = await self._guard(self.commands.delete(name))
        await self._applied(control)
        if deleted and name in self.reader.positions:
            self.reader.forget(name)
        return deleted

    async def delete_idle(self, name: str) -> bool:
        """The idle_ttl sweep: delete ``name`` everywhere unless a node marked it active."""
        self._check_ready("delete topic")
        deleted, control = await self._guard(self.commands.delete_idle(name))
        await self._applied(control)
        if deleted and name in self.reader.positions:
            self.reader.forget(name)
        return deleted

    async def mark_active(self, name: str, ttl: float) -> None:
        self._check_ready("mark topic active")
        await self._guard(self.commands.mark_active(name, ttl))

    def delete_topic_sync(self, name: str) -> bool:
        self._check_ready("delete topic")
        deleted = self._guard_sync(lambda: self.commands.delete_sync(name))
        if deleted:
            self.reader.forget(name)
        return deleted

    async def adopt(self, name: str) -> bool:
        """On a local miss: follow ``name`` now if the registry has it (created elsewhere
        and not yet announced here). Before the registry was first loaded, a miss proves
        nothing: BackendUnavailable (503, try again), never "no such topic"."""
        if not self.loaded.is_set():
            await self.first_attempt()
            if not self.loaded.is_set():
                raise BackendUnavailable(
                    f"topic {name!r}: the topics are not loaded from Redis yet"
                )
        if not self.ready or not await self._guard(self.commands.is_topic(name)):
            return False
        self.reader.follow(name, "0-0")
        return True

    def resume(
        self,
        topic: str,
        core_sub: _core.CoreSub,
        since: str | None,
        last_n: int,
        notices: Notices,
        since_group: Sequence[str] = (),
    ) -> asyncio.Task[Replay] | None:
        """History ``core_sub`` lacks, as a task (None when the local ring has it all)."""
        return self.resumer.start(topic, core_sub, since, last_n, notices, since_group)

    # -- helpers -----------------------------------------------------------------------
    async def _applied(self, control: str) -> None:
        if not await self.reader.caught_up(control, APPLY_TIMEOUT):
            log.warning("control notice %s not applied here after %.0fs", control, APPLY_TIMEOUT)

    def _failed(self) -> None:
        """A command lost Redis: refuse work until the reader has checked and recovered."""
        self.ready = False
        self._resync = True

    async def _guard(self, pending: Awaitable[T]) -> T:
        try:
            return await pending
        except BackendUnavailable:
            self._failed()
            raise

    def _guard_sync(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except BackendUnavailable:
            self._failed()
            raise


def redact(url: str) -> str:
    """``url`` without its user and password (``redis://:secret@host`` -> ``redis://host``)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))

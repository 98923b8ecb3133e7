"""The shared history under :class:`~fanwire.Broker`: the :class:`Log` interface.

The broker and its subscriptions never ask which deployment they run in; they call the
one :class:`Log` the broker was built with:

- :class:`MemoryLog`: the core's own rings (one process); a publish is a core call.
- :class:`RedisLog`: Redis Streams shared by several workers and hosts
  (:class:`~fanwire.backends.redis.RedisBackend`, imported only when used). A publish is
  an ``XADD`` that comes back to every node through its reader, which feeds the core.

In both, the core (``_core.Core``) holds the local rings and the subscribers; a Log only
decides where a publish, a topic change and the history of a resume come from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from . import _core
from .errors import LimitReached
from .names import check_topic, is_valid_name
from .wire import Notices

if TYPE_CHECKING:
    from .backends.history import Replay
    from .backends.redis import RedisBackend

__all__ = ["Log", "MemoryLog", "Published", "PublishedBatch", "RedisLog"]


@dataclass(frozen=True)
class Published:
    """What a publish returns: the message id and how many subscribers it reached."""

    message_id: str
    subscribers: int
    duplicate: bool = False  # an idempotent publish repeated: nothing was published


@dataclass(frozen=True)
class PublishedBatch:
    """What a batch publish returns: the ids in order and the subscribers it reached."""

    message_ids: list[str]
    subscribers: int


class Log(Protocol):
    """What the facade needs from the history it publishes to and resumes from."""

    def start(self) -> None:
        """Start on the running loop (idempotent)."""

    async def stop(self) -> None:
        """Stop and release the connections."""

    def create_topic(self, name: str) -> bool:
        """Create ``name`` (valid, checked by the caller); False when it existed."""

    async def acreate_topic(self, name: str) -> bool:
        """:meth:`create_topic` without blocking the loop."""

    def delete_topic(self, name: str) -> bool:
        """Delete ``name``; its subscribers get ``topic_deleted``. False when unknown."""

    async def adelete_topic(self, name: str) -> bool:
        """:meth:`delete_topic` without blocking the loop."""

    def publish(
        self, topic: str, payload: bytes, event: str, message_id: str, on_loop: bool
    ) -> Published | None:
        """Publish a checked payload; None when ``topic`` does not exist."""

    async def apublish(
        self, topic: str, payload: bytes, event: str, on_loop: bool
    ) -> Published | None:
        """:meth:`publish` without blocking the loop."""

    def submit(self, topic: str, payload: bytes, event: str) -> asyncio.Future[str | None]:
        """Publish a checked payload without awaiting it: the future of its id (None when
        ``topic`` does not exist). Submissions are applied in their order."""

    def publish_many(
        self, topic: str, payloads: list[bytes], events: list[str], on_loop: bool
    ) -> PublishedBatch | None:
        """Publish a checked batch in order, all or nothing; None when ``topic`` does not
        exist."""

    async def apublish_many(
        self, topic: str, payloads: list[bytes], events: list[str], on_loop: bool
    ) -> PublishedBatch | None:
        """:meth:`publish_many` without blocking the loop."""

    async def adopt(self, names: Iterable[str]) -> None:
        """Make the topics of ``names`` that exist elsewhere known here before a subscribe."""

    def resume(
        self,
        topic: str,
        core_sub: _core.CoreSub,
        since: str | None,
        last_n: int,
        notices: Notices,
        since_group: Sequence[str],
    ) -> list[Any] | asyncio.Task[Replay]:
        """What a new subscriber of ``topic`` gets before the core's messages: notices to
        queue now (a ``gap``), or a task fetching what the local ring lacks (Redis)."""


def _publish_local(
    core: _core.Core,
    drain: Callable[[], None],
    topic: str,
    payload: bytes,
    event: str,
    message_id: str,
    on_loop: bool,
) -> Published | None:
    try:
        result = core.publish(topic, payload, event, message_id, on_loop)
    except KeyError:
        return None
    if result.must_drain:
        drain()
    return Published(result.id, result.subscribers)


def _publish_many_local(
    core: _core.Core,
    drain: Callable[[], None],
    topic: str,
    payloads: list[bytes],
    events: list[str],
    on_loop: bool,
) -> PublishedBatch | None:
    try:
        result = core.publish_many(topic, payloads, events, on_loop)
    except KeyError:
        return None
    if result.must_drain:
        drain()
    return PublishedBatch(list(result.ids), result.subscribers)


def _check_room(core: _core.Core, name: str, max_topics: int) -> None:
    if not core.has_topic(name) and core.topic_count() >= max_topics:
        raise LimitReached(f"at most {max_topics} topics")


class MemoryLog:
    """One process: the core's rings are the whole history."""

    def __init__(self, core: _core.Core, drain: Callable[[], None], max_topics: int) -> None:
        self.core = core
        self.drain = drain
        self.max_topics = max_topics
        #: (retention, max_age, conflate_key, cache) of a topic being created (0, "": defaults).
        self.shape: Callable[[str], tuple[int, float, str, bool]] = _core_defaults

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def create_topic(self, name: str) -> bool:
        _check_room(self.core, name, self.max_topics)
        if self.core.has_topic(name):
            return False
        return self.core.create_topic(name, *self.shape(name))

    async def acreate_topic(self, name: str) -> bool:
        return self.create_topic(name)

    def delete_topic(self, name: str) -> bool:
        return self.core.delete_topic(name)

    async def adelete_topic(self, name: str) -> bool:
        return self.core.delete_topic(name)

    def publish(
        self, topic: str, payload: bytes, event: str, message_id: str, on_loop: bool
    ) -> Published | None:
        return _publish_local(self.core, self.drain, topic, payload, event, message_id, on_loop)

    async def apublish(
        self, topic: str, payload: bytes, event: str, on_loop: bool
    ) -> Published | None:
        return self.publish(topic, payload, event, "", on_loop)

    def submit(self, topic: str, payload: bytes, event: str) -> asyncio.Future[str | None]:
        published = self.publish(topic, payload, event, "", True)
        done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        done.set_result(None if published is None else published.message_id)
        return done

    def publish_many(
        self, topic: str, payloads: list[bytes], events: list[str], on_loop: bool
    ) -> PublishedBatch | None:
        """One core call for the whole batch (one lock of the topic, one wake-up)."""
        return _publish_many_local(self.core, self.drain, topic, payloads, events, on_loop)

    async def apublish_many(
        self, topic: str, payloads: list[bytes], events: list[str], on_loop: bool
    ) -> PublishedBatch | None:
        return self.publish_many(topic, payloads, events, on_loop)

    async def adopt(self, names: Iterable[str]) -> None:
        pass

    async def apublish_once(
        self, topic: str, payload: bytes, event: str, key: str, window: float, max_keys: int
    ) -> Published | None:
        raise NotImplementedError("the broker dedupes in-memory publishes itself")

    def resume(
        self,
        topic: str,
        core_sub: _core.CoreSub,
        since: str | None,
        last_n: int,
        notices: Notices,
        since_group: Sequence[str],
    ) -> list[Any] | asyncio.Task[Replay]:
        # The ring is the whole history: what it lacks is gone (the core said so).
        return [notices.gap(topic, core_sub.first_available)] if core_sub.gap else []


class RedisLog:
    """Several nodes: Redis Streams are the history, each node's core a window on them."""

    def __init__(
        self,
        core: _core.Core,
        drain: Callable[[], None],
        announce_gap: Callable[[str, str | None], None],
        url: str,
        *,
        retention: int,
        max_topics: int,
        prefix: str,
        backlog: Callable[[Collection[str]], int],
        rounds: Callable[[], int],
    ) -> None:
        from .backends.redis import RedisBackend

        self.core = core
        self.drain = drain
        self.max_topics = max_topics
        self.backend: RedisBackend = RedisBackend(
            core,
            drain,
            announce_gap,
            url,
            retention=retention,
            max_topics=max_topics,
            prefix=prefix,
            backlog=backlog,
            rounds=rounds,
        )

    def start(self) -> None:
        self.backend.start()

    async def stop(self) -> None:
        await self.backend.stop()

    def create_topic(self, name: str) -> bool:
        _check_room(self.core, name, self.max_topics)
        return self.backend.create_topic_sync(name)

    async def acreate_topic(self, name: str) -> bool:
        return await self.backend.create_topic(name)  # Redis checks the limit

    def delete_topic(self, name: str) -> bool:
        return self.backend.delete_topic_sync(name)

    async def adelete_topic(self, name: str) -> bool:
        return await self.backend.delete_topic(check_topic(name))

    def publish(
        self, topic: str, payload: bytes, event: str, message_id: str, on_loop: bool
    ) -> Published | None:
        if message_id:  # already in the log (its id says where): feed the local core only
            return _publish_local(self.core, self.drain, topic, payload, event, message_id, on_loop)
        mid = self.backend.publish_sync(topic, payload, event)
        return None if mid is None else Published(mid, self._local_subscribers(topic))

    async def apublish(
        self, topic: str, payload: bytes, event: str, on_loop: bool
    ) -> Published | None:
        mid = await self.backend.publish(topic, payload, event)
        return None if mid is None else Published(mid, self._local_subscribers(topic))

    def submit(self, topic: str, payload: bytes, event: str) -> asyncio.Future[str | None]:
        """The ``XADD`` queued for the next pipeline (one round trip carries every publish
        submitted meanwhile, in order); acknowledge only once the future is done."""
        return self.backend.submit_publish(topic, payload, event)

    def publish_many(
        self, topic: str, payloads: list[bytes], events: list[str], on_loop: bool
    ) -> PublishedBatch | None:
        ids = self.backend.publish_many_sync(topic, list(zip(payloads, events, strict=True)))
        return None if ids is None else PublishedBatch(ids, self._local_subscribers(topic))

    async def apublish_many(
        self, topic: str, payloads: list[bytes], events: list[str], on_loop: bool
    ) -> PublishedBatch | None:
        """One script (atomic, one round trip): every ``XADD`` of the batch in order, or
        none if the topic is gone."""
        ids = await self.backend.publish_many(topic, list(zip(payloads, events, strict=True)))
        return None if ids is None else PublishedBatch(ids, self._local_subscribers(topic))

    async def apublish_once(
        self, topic: str, payload: bytes, event: str, key: str, window: float, max_keys: int
    ) -> Published | None:
        """Publish unless ``key`` was used on ``topic`` within ``window`` seconds on any
        node (one Lua script with the XADD); None when ``topic`` does not exist."""
        found = await self.backend.publish_once(topic, payload, event, key, window, max_keys)
        if found is None:
            return None
        return Published(found[0], self._local_subscribers(topic), found[1])

    def publish_once(
        self, topic: str, payload: bytes, event: str, key: str, window: float, max_keys: int
    ) -> Published | None:
        found = self.backend.publish_once_sync(topic, payload, event, key, window, max_keys)
        if found is None:
            return None
        return Published(found[0], self._local_subscribers(topic), found[1])

    async def adopt(self, names: Iterable[str]) -> None:
        # A subscribe never asks Redis itself (it would block the loop): the caller
        # awaits this first, for topics created on another node a moment ago.
        for name in names:
            if is_valid_name(name) and not self.core.has_topic(name):
                await self.backend.adopt(name)

    def resume(
        self,
        topic: str,
        core_sub: _core.CoreSub,
        since: str | None,
        last_n: int,
        notices: Notices,
        since_group: Sequence[str],
    ) -> list[Any] | asyncio.Task[Replay]:
        task = self.backend.resume(topic, core_sub, since, last_n, notices, since_group)
        return [] if task is None else task

    def _local_subscribers(self, topic: str) -> int:
        """This node's subscribers of ``topic``: counted when there are few topics, else
        as the node's reader last saw them (O(1))."""
        if self.core.topic_count() > 100:
            return self.backend.reader.subscribers.get(topic, 0)
        return _subscribers_of(self.core, topic)


def _subscribers_of(core: _core.Core, topic: str) -> int:
    return next((row.subscribers for row in core.topic_stats() if row.name == topic), 0)


def _core_defaults(name: str) -> tuple[int, float, str, bool]:
    """(retention, max_age, conflate_key, cache) meaning "the core's defaults"."""
    return 0, 0.0, "", False

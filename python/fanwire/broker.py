"""asyncio facade over the native core: :class:`Broker` (subscriptions: ``subscription.py``,
the history they come from: :class:`~fanwire.log.Log`).

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
import itertools
import logging
import threading
import weakref
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from . import _core
from .dedupe import KeyWindow, check_key
from .enums import Mode, Policy
from .errors import InvalidMessage, PayloadTooLarge, ShuttingDown, TopicNotFound
from .idle import IdleSweeper
from .log import Log, MemoryLog, Published, PublishedBatch, RedisLog
from .names import RESERVED_EVENTS, check_topic, is_valid_name
from .presence import ClusterPresence, Hook, Presence, queue_rows, worst
from .subscription import Hub, Subscription
from .topics import TopicOptions, TopicRules, parse_options
from .waker import Waker

if TYPE_CHECKING:
    from .backends.redis import RedisBackend

__all__ = [
    "Broker",
    "Mode",
    "Policy",
    "Published",
    "PublishedBatch",
    "Subscription",
    "TopicInfo",
    "TopicOptions",
]

#: Most messages one batch publish may carry (more: PayloadTooLarge, 413).
MAX_BATCH = 1000

log = logging.getLogger("fanwire")


@dataclass(frozen=True)
class TopicInfo:
    name: str
    subscribers: int
    messages: int
    dropped: int
    conflated: int = 0  # skipped as superseded by its conflate-policy subscribers


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
        presence_ttl: float = 30.0,
        topics: TopicRules | Mapping[str, TopicOptions] | None = None,
        dedupe_max_keys: int = 10_000,
        writer_threads: int = 0,
    ) -> None:
        self.retention = retention
        self.max_payload = max_payload
        self.max_topics = max_topics
        self.auto_create = auto_create
        self.rules = _rules(topics, retention, max_payload, auto_create)
        self._overrides: dict[str, TopicOptions] = {}  # create_topic(name, **options)
        self._options: dict[str, TopicOptions] = {}  # resolved, per topic looked up
        self._dedupe = KeyWindow(dedupe_max_keys)  # in-memory idempotency keys
        self._dedupe_lock = threading.Lock()
        self._idle = IdleSweeper(self)  # deletes idle_ttl topics
        self._core = _core.Core(retention, external_ids=bool(redis_url))
        self._log: Log = MemoryLog(self._core, self._schedule_drain, max_topics)
        self._backend: RedisBackend | None = None  # for the server's Redis-only features
        self._presence = Presence()
        self._presence.core, self._presence.drain = self._core, self._schedule_drain
        if redis_url:
            cluster = ClusterPresence(self._presence, redis_url, redis_prefix, presence_ttl)
            cluster.exists = self._core.has_topic
            self._presence.cluster = cluster
        if redis_url:
            redis_log = RedisLog(
                self._core,
                self._schedule_drain,
                self._announce_gap,
                redis_url,
                retention=retention,
                max_topics=max_topics,
                prefix=redis_prefix,
                backlog=self._backlog,
                rounds=lambda: self._waker.rounds,
            )
            self._log, self._backend = redis_log, redis_log.backend
            # Every node shapes the topics it follows with the same options.
            redis_log.backend.reader.shape = self._core_shape
            redis_log.backend.commands.shape = self._shape
            redis_log.backend.commands.options_of = self._options_json
            redis_log.backend.reader.on_options = self._remote_options
            # A deletion from any node ends its members here at once, as a local one does.
            redis_log.backend.reader.on_forget = self._presence.topic_gone
        else:
            self._log.shape = self._core_shape
        self._waiters = itertools.count(1)
        self._subs: dict[int, Subscription] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._waker = Waker(self._core.fileno(), self._drain, wake_interval)
        # Client messages of native WebSockets (publishes among them) are answered at once:
        # the wake_interval batches subscribers' wake-ups, it must not delay an ack.
        self._inbox = Waker(self._core.inbox_fileno(), self._drain_inbox, 0.0)
        self._shutting_down = False
        self._writer: _core.Writer | None = None
        self._writer_threads = writer_threads  # 0: one per CPU but one (at most 4)
        self._hub = Hub(
            core=self._core,
            log=self._log,
            retention=retention,
            check_open=self._check_open,
            writer=lambda: self.writer,
            forget=self._forget,
            on_topic=self._presence.on_topic,
        )

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Attach to the running event loop (idempotent); subscriptions need it."""
        loop = asyncio.get_running_loop()
        self._log.start()
        if self._presence.cluster is not None:
            self._presence.cluster.start()
        if self._sweeps_idle():
            self._idle.start(loop)
        if self._loop is loop:
            return
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._waker.attach(loop)
        self._inbox.attach(loop)
        # A broker dropped without close() must not leave its fd registered with the loop:
        # the fd number is reused by the next broker, whose wake-ups would then be lost.
        # (The callback must not hold the broker, or it would never be collected.)
        weakref.finalize(self, _forget_fd, loop, self._core.fileno())
        weakref.finalize(self, _forget_fd, loop, self._core.inbox_fileno())

    async def astart(self) -> None:
        """:meth:`start`; in Redis mode, also wait until the node's first connection
        attempt ended (bounded): a server then serves only once it knows the cluster's
        topics, or once Redis failed to answer (then topic lookups answer 503)."""
        self.start()
        if self._backend is not None:
            await self._backend.first_attempt()

    async def aclose(self) -> None:
        """:meth:`close`, then stop the Redis reader and close its connections."""
        self.close()
        if self._presence.cluster is not None:
            await self._presence.cluster.stop()
        await self._log.stop()

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
        self._idle.stop()
        if self._loop is not None and not self._loop.is_closed():
            self._waker.detach()
            self._inbox.detach()
            self._drain()
            self._drain_inbox()
        self._loop = None

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @property
    def writer(self) -> _core.Writer:
        """The native writer's threads (created on first use by a native connection)."""
        if self._writer is None:
            self._writer = _core.Writer(self._core, self._writer_threads)
        return self._writer

    def limit_native_grace(self, seconds: float) -> None:
        """No stream handed to the native writer may take more than ``seconds`` from now
        to close once it ended (the shutdown grace): past it, the core resets it."""
        if self._writer is not None:
            self._writer.limit_grace(seconds)

    # -- topics ----------------------------------------------------------------------
    def create_topic(self, name: str, **options: Any) -> bool:
        """Create ``name``; False when it already existed (its options then stay).

        ``options`` are :class:`~fanwire.TopicOptions` fields (``retention=50``,
        ``max_age=60``, ...): they win over the settings' patterns for this topic.
        """
        check_topic(name)
        self._check_open()
        self._prepare_options(name, options)
        return self._created(name, self._log.create_topic(name))

    def delete_topic(self, name: str) -> bool:
        """Delete ``name``; its subscribers get ``topic_deleted``. False when unknown."""
        deleted = self._deleted(name, self._log.delete_topic(name))
        self._presence.topic_gone(name)
        return deleted

    async def acreate_topic(self, name: str, **options: Any) -> bool:
        """:meth:`create_topic` for the event loop; in Redis mode, known on every node."""
        check_topic(name)
        self._check_open()
        self._prepare_options(name, options)
        return self._created(name, await self._log.acreate_topic(name))

    async def adelete_topic(self, name: str) -> bool:
        """:meth:`delete_topic` for the event loop; in Redis mode, on every node."""
        deleted = self._deleted(name, await self._log.adelete_topic(name))
        self._presence.topic_gone(name)
        return deleted

    def topic_options(self, name: str) -> TopicOptions:
        """The effective options of topic ``name`` (``GET /topics/{name}``): those given
        to :meth:`create_topic`, else the most specific pattern's, else the defaults."""
        options = self._options.get(name)
        if options is None:
            options = self.rules.resolve(name)
            override = self._overrides.get(name)
            if override is not None:
                options = options.merged(override)
            if self._core.has_topic(name):  # remembered for existing topics only
                self._options[name] = options
        return options

    def topic(self, name: str) -> TopicInfo | None:
        """One topic's counts, or None when there is no such topic."""
        if not self._core.has_topic(name):
            return None
        return next((t for t in self.topics() if t.name == name), None)

    def auto_creates(self, name: str) -> bool:
        """Whether ``name`` is created on first use (its ``auto_create`` option)."""
        return bool(self.rules.resolve(name).auto_create)

    def _prepare_options(self, name: str, options: dict[str, Any]) -> None:
        if options and not self._core.has_topic(name):
            override = parse_options(options)
            self.rules.resolve(name, options)  # a bad combination fails here
            self._overrides[name] = override
            self._options.pop(name, None)
            loop = self._loop
            if override.idle_ttl and loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._idle.start, loop)

    def _sweeps_idle(self) -> bool:
        """Whether some topic may have an idle_ttl (then the sweep runs)."""
        return self._shortest_idle_ttl() < float("inf")

    def _shortest_idle_ttl(self) -> float:
        rules = self.rules
        options = [rules.defaults, *(o for _, o in rules.patterns), *self._overrides.values()]
        return min((o.idle_ttl for o in options if o.idle_ttl), default=float("inf"))

    def _created(self, name: str, created: bool) -> bool:
        if not created and not self._core.has_topic(name):
            self._overrides.pop(name, None)
        return created

    def _deleted(self, name: str, deleted: bool) -> bool:
        self._overrides.pop(name, None)
        self._options.pop(name, None)
        with self._dedupe_lock:
            self._dedupe.forget(name)
        self._idle.forget(name)
        return deleted

    def _core_shape(self, name: str) -> tuple[int, float, str, bool]:
        """(retention, max_age, conflate_key, cache) of the core's topic ``name``, as it
        is created."""
        self._options.pop(name, None)  # a topic created anew takes its options anew
        options = self.topic_options(name)
        retention, max_age = self._shape(name)
        return retention, max_age, options.conflate_key or "", bool(options.cache)

    def _options_json(self, name: str) -> str:
        """The options given to create_topic for ``name``, as JSON ("" none)."""
        override = self._overrides.get(name)
        return "" if override is None else override.model_dump_json(exclude_none=True)

    def _remote_options(self, name: str, options: str) -> None:
        """Redis mode: a node created ``name`` with these options (JSON, "" none)."""
        self._options.pop(name, None)
        if not options:
            self._overrides.pop(name, None)
            return
        try:
            self._overrides[name] = parse_options(orjson.loads(options))
        except (InvalidMessage, orjson.JSONDecodeError):
            log.warning("ignoring bad options of topic %r from Redis: %s", name, options)

    def _shape(self, name: str) -> tuple[int, float]:
        options = self.topic_options(name)
        return options.retention or self.retention, options.max_age or 0.0

    def has_topic(self, name: str) -> bool:
        return self._core.has_topic(name)

    async def aknow_topics(self, names: Iterable[str]) -> None:
        """Redis mode: follow each of ``names`` that this node has not heard of yet but
        the registry has (created on another node a moment ago), so that a subscribe
        right after finds it. Call it before :meth:`subscribe` on the event loop: the
        subscribe itself never asks Redis (it would block the loop)."""
        await self._log.adopt(names)

    def topics(self) -> list[TopicInfo]:
        return [
            TopicInfo(row.name, row.subscribers, row.messages, row.dropped, row.conflated)
            for row in self._core.topic_stats()
        ]

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
            "subscriber_count": counters.subscribers,
            "published_count": counters.published,
            "delivered_count": counters.delivered,
            "dropped_count": counters.dropped,
            "conflated_count": counters.conflated,
            "retained_messages": counters.messages,
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
        self._check_publish(payload, event, topic)
        on_loop = self._loop_thread == threading.get_ident()
        published = self._log.publish(topic, payload, event or "", message_id, on_loop)
        if published is None:
            # Only valid names ever become topics, so the name is checked on a miss only.
            self._missing(topic)
            published = self._log.publish(topic, payload, event or "", message_id, on_loop)
        return published or Published("", 0)

    async def apublish(self, topic: str, data: Any, event: str | None = None) -> Published:
        """:meth:`publish_message` for the event loop.

        In Redis mode it returns once Redis accepted the message (``XADD``), with the
        stream id as message id and this node's subscribers of ``topic`` as count; it
        raises :class:`~fanwire.backends.BackendUnavailable` (503) when Redis is down.
        """
        payload = _encode(data)
        self._check_publish(payload, event, topic)
        on_loop = self._loop_thread == threading.get_ident()
        published = await self._log.apublish(topic, payload, event or "", on_loop)
        if published is None:
            check_topic(topic)
            if not self.auto_creates(topic):
                raise TopicNotFound(f"no topic {topic!r}")
            await self.acreate_topic(topic)
            published = await self._log.apublish(topic, payload, event or "", on_loop)
        return published or Published("", 0)

    def submit_publish(
        self, topic: str, data: Any, event: str | None = None
    ) -> asyncio.Future[str | None]:
        """Publish without awaiting the log (on the event loop): the future of the message
        id, None when ``topic`` does not exist (auto-creation is not done here). In Redis
        mode the ``XADD`` goes out with the next pipeline, after every publish submitted
        before it; acknowledge a publish only once its future is done (then Redis has it).
        Checks (payload, event) raise at once."""
        payload = _encode(data)
        self._check_publish(payload, event, topic)
        return self._log.submit(topic, payload, event or "")

    def _encode_batch(
        self, topic: str, messages: Collection[tuple[Any, str | None]]
    ) -> tuple[list[bytes], list[str]]:
        """Every message of a batch encoded and checked: one bad message refuses all."""
        if not 1 <= len(messages) <= MAX_BATCH:
            if messages:
                raise PayloadTooLarge(f"a batch holds at most {MAX_BATCH} messages")
            raise InvalidMessage("a batch holds at least one message")
        payloads, events = [], []
        for data, event in messages:
            payload = _encode(data)
            self._check_publish(payload, event, topic)
            payloads.append(payload)
            events.append(event or "")
        return payloads, events

    def publish_batch(
        self, topic: str, messages: Collection[tuple[Any, str | None]]
    ) -> PublishedBatch:
        """Publish ``messages`` ((data, event) pairs) to ``topic`` in order, all or none
        (one core call: their ids are consecutive and no other publish comes between)."""
        payloads, events = self._encode_batch(topic, messages)
        on_loop = self._loop_thread == threading.get_ident()
        published = self._log.publish_many(topic, payloads, events, on_loop)
        if published is None:
            self._missing(topic)
            published = self._log.publish_many(topic, payloads, events, on_loop)
        return published or PublishedBatch([], 0)

    async def apublish_batch(
        self, topic: str, messages: Collection[tuple[Any, str | None]]
    ) -> PublishedBatch:
        """:meth:`publish_batch` for the event loop (Redis mode: one script call, one
        round trip, for the whole batch)."""
        payloads, events = self._encode_batch(topic, messages)
        on_loop = self._loop_thread == threading.get_ident()
        published = await self._log.apublish_many(topic, payloads, events, on_loop)
        if published is None:
            check_topic(topic)
            if not self.auto_creates(topic):
                raise TopicNotFound(f"no topic {topic!r}")
            await self.acreate_topic(topic)
            published = await self._log.apublish_many(topic, payloads, events, on_loop)
        return published or PublishedBatch([], 0)

    # -- idempotent publishing (PROTOCOL.md, "Idempotent publish") --------------------
    def publish_idempotent(
        self, topic: str, data: Any, event: str | None = None, *, idempotency_key: str
    ) -> Published:
        """:meth:`publish_message`, unless ``idempotency_key`` was used on ``topic``
        within its ``dedupe_window``: then nothing is published and the answer is the
        first publish's id with ``duplicate=True`` (on every node, in Redis mode)."""
        key = check_key(idempotency_key)
        window = self.topic_options(topic).dedupe_window or 0.0
        if window <= 0:
            return self.publish_message(topic, data, event)
        if isinstance(self._log, RedisLog):
            payload = _encode(data)
            self._check_publish(payload, event, topic)
            max_keys = self._dedupe.max_keys
            found = self._log.publish_once(topic, payload, event or "", key, window, max_keys)
            if found is None:
                self._missing(topic)
                found = self._log.publish_once(topic, payload, event or "", key, window, max_keys)
            return found or Published("", 0)
        with self._dedupe_lock:  # a check and a publish, atomic for concurrent retries
            first = self._dedupe.first(topic, key)
            if first is not None and self._core.has_topic(topic):
                return Published(first, self._subscribers(topic), duplicate=True)
            published = self.publish_message(topic, data, event)
            self._dedupe.remember(topic, key, published.message_id, window)
        return published

    async def apublish_idempotent(
        self, topic: str, data: Any, event: str | None = None, *, idempotency_key: str
    ) -> Published:
        """:meth:`publish_idempotent` for the event loop (Redis mode: one script with the
        ``XADD``, so two nodes receiving the same retry publish once)."""
        key = check_key(idempotency_key)
        window = self.topic_options(topic).dedupe_window or 0.0
        if not isinstance(self._log, RedisLog) or window <= 0:
            if window <= 0:
                return await self.apublish(topic, data, event)
            return self.publish_idempotent(topic, data, event, idempotency_key=key)
        payload = _encode(data)
        self._check_publish(payload, event, topic)
        max_keys = self._dedupe.max_keys
        found = await self._log.apublish_once(topic, payload, event or "", key, window, max_keys)
        if found is None:
            check_topic(topic)
            if not self.auto_creates(topic):
                raise TopicNotFound(f"no topic {topic!r}")
            await self.acreate_topic(topic)
            found = await self._log.apublish_once(
                topic, payload, event or "", key, window, max_keys
            )
        return found or Published("", 0)

    def _subscribers(self, topic: str) -> int:
        info = self.topic(topic)
        return 0 if info is None else info.subscribers

    def end(self, topic: str, data: Any = None) -> str:
        """End ``topic``'s stream (e.g. one answer of a per-request topic): publish its
        final message, of the reserved event type ``end``, into the topic's log, so that
        replay, resume and every node give it too. SSE streams send ``event: end`` (with
        no ``id:``, so a reconnect resumes before it and gets it again) and close once
        each of their topics ended; WebSockets get it as an ``event``. Returns its id."""
        payload = _encode(data)
        self._check_publish(payload, None, topic)
        on_loop = self._loop_thread == threading.get_ident()
        published = self._log.publish(topic, payload, "end", "", on_loop)
        if published is None:
            check_topic(topic)
            raise TopicNotFound(f"no topic {topic!r}")
        return published.message_id

    async def aend(self, topic: str, data: Any = None) -> str:
        """:meth:`end` for the event loop (in Redis mode: once Redis accepted it)."""
        payload = _encode(data)
        self._check_publish(payload, None, topic)
        on_loop = self._loop_thread == threading.get_ident()
        published = await self._log.apublish(topic, payload, "end", on_loop)
        if published is None:
            check_topic(topic)
            raise TopicNotFound(f"no topic {topic!r}")
        return published.message_id

    def _check_publish(self, payload: bytes, event: str | None, topic: str = "") -> None:
        if event is not None and not is_valid_name(event):
            raise InvalidMessage("event names match ^[A-Za-z0-9_.-]{1,255}$")
        if event in RESERVED_EVENTS:
            raise InvalidMessage(f"event type {event!r} is reserved for the server's notices")
        limit = self.max_payload
        if topic:
            limit = self.topic_options(topic).max_payload or limit
        if len(payload) > limit:
            raise PayloadTooLarge(f"payload is {len(payload)} bytes, limit {limit}")
        if self._shutting_down:
            raise ShuttingDown("server is shutting down")

    def _missing(self, topic: str) -> None:
        """A publish found no topic: create it (auto_create) or raise TopicNotFound."""
        check_topic(topic)
        if not self.auto_creates(topic):
            raise TopicNotFound(f"no topic {topic!r}")
        self.create_topic(topic)

    def _announce_gap(self, topic: str, first_available: str | None) -> None:
        """Tell every local subscriber of ``topic`` that messages may be missing."""
        for sub in list(self._subs.values()):
            sub.inject_gap(topic, first_available)

    def _backlog(self, topics: Collection[str]) -> int:
        """Messages of ``topics`` that local subscribers have not taken yet (the Redis
        reader paces a catch-up with it)."""
        return sum(sub.backlog(topics) for sub in list(self._subs.values()))

    # -- subscribing -----------------------------------------------------------------
    def subscribe(
        self,
        topics: str | Iterable[str] | None = None,
        *,
        last_n: int = 0,
        since: str | None = None,
        policy: Policy | str = Policy.drop_oldest,
        queue_size: int = 1000,
        mode: Mode | str = Mode.sse,
        end_when_empty: bool | None = None,
    ) -> Subscription:
        """Subscribe to one or several topics (or none yet: add them with ``add``).

        ``mode`` picks the batch type: ``"sse"`` yields ``bytes`` (concatenated frames),
        ``"ws"`` yields ``list[str]`` (one text message each). ``end_when_empty`` (default:
        True for SSE) ends the iteration once no topic is left.
        """
        self._check_open()
        mode, policy = Mode(mode), Policy.parse(policy)
        self.start()
        if end_when_empty is None:
            end_when_empty = mode is Mode.sse
        waiter = next(self._waiters)
        sub = Subscription(self._hub, waiter, mode, end_when_empty, policy, queue_size)
        self._subs[waiter] = sub
        names = [topics] if isinstance(topics, str) else list(topics or ())
        try:
            for name in names:
                sub.add(name, last_n=last_n, since=since, since_group=names)
        except BaseException:
            sub.close()
            raise
        return sub

    # -- occupancy and presence (presence.py) --------------------------------------------
    def occupancy(self, topic: str) -> int:
        """Subscriptions (connections) of ``topic`` on every node."""
        return self._presence.occupancy(topic)

    def presence(self, topic: str) -> list[dict[str, Any]]:
        """The members of ``topic`` on every node: ``{client_id, user, info, joined_at}``."""
        return self._presence.members(topic)

    def join(
        self,
        sub: Subscription,
        topic: str,
        *,
        client_id: str,
        user: str | None = None,
        info: dict[str, Any] | None = None,
        join_leave: bool = False,
    ) -> None:
        """After ``sub.add(topic)``: join ``topic``'s presence set (``info`` not None; ``{}``
        for no info) and/or receive its ``join``/``leave`` notices. The member leaves when
        the subscription ends, for whatever reason."""
        self._presence.join(
            sub, topic, client_id=client_id, user=user, info=info, join_leave=join_leave
        )

    def on_occupied(self, pattern: str, fn: Hook) -> None:
        """Run ``fn(topic)`` (sync or async) when a topic matching ``pattern`` (``*``
        as in auth claims) gets its first subscriber on any node; on one node only."""
        self._presence.on_occupied(pattern, fn)

    def on_vacated(self, pattern: str, fn: Hook) -> None:
        """Run ``fn(topic)`` when the last subscriber of such a topic leaves, on the node
        that ran ``on_occupied`` for it."""
        self._presence.on_vacated(pattern, fn)

    @property
    def nodes(self) -> list[str]:
        """The ids of the live nodes sharing this broker's Redis (just this one in memory)."""
        cluster = self._presence.cluster
        return cluster.node_ids() if cluster is not None else [self._presence.node_id]

    @property
    def node_id(self) -> str:
        return self._presence.node_id

    def console_stats(self, worst_n: int = 10) -> dict[str, Any]:
        """What the console adds to ``GET /stats``: occupancy and presence counts per
        topic (every node), the nodes, slow-consumer closes, the ``worst_n`` lagging
        queues of this node's subscribers, and every queue's fill (for /metrics)."""
        rows = queue_rows(list(self._subs.values()))
        names = [t.name for t in self.topics()]
        return {
            "occupancy": {name: self.occupancy(name) for name in names},
            "presence": {name: len(self.presence(name)) for name in names},
            "node": self.node_id,
            "nodes": self.nodes,
            "slow_consumer_count": self._presence.slow_consumers,
            "worst_subscribers": worst(rows, worst_n),
            "queue_fills": [r["fill"] for r in rows],
        }

    # -- internals -------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._shutting_down:
            raise ShuttingDown("server is shutting down")

    def _forget(self, waiter: int) -> None:
        """A subscription closed: no more wake-ups for it."""
        self._subs.pop(waiter, None)

    def _schedule_drain(self) -> None:
        self._waker.request()

    def _drain(self) -> None:
        """Wake every subscription the core reported ready (runs on the loop)."""
        wakes = self._core.drain()
        self._wake_all(((False, wakes.ready), (True, wakes.closing)))

    def _drain_inbox(self) -> None:
        """Let every native WebSocket that received client messages answer them."""
        self._wake_all(((False, self._core.drain_inbox()),))

    def _wake_all(self, rounds: Iterable[tuple[bool, Iterable[int]]]) -> None:
        """The core hands each wake-up out once: a wake-up that raises (e.g. a direct write)
        must not cost the rest of the round theirs, so every one is woken, then the
        first error is logged (raising here would also break ``close``).
        """
        first: Exception | None = None
        failed = 0
        subs = self._subs
        for closing, waiters in rounds:
            for waiter in waiters:
                sub = subs.get(waiter)
                if sub is None:
                    continue
                try:
                    sub.wake(closing)
                except Exception as exc:
                    failed += 1
                    first = first or exc
        if first is not None:
            log.error("%d wake-up(s) of this round failed; the first:", failed, exc_info=first)


def _rules(
    topics: TopicRules | Mapping[str, TopicOptions] | None,
    retention: int,
    max_payload: int,
    auto_create: bool,
) -> TopicRules:
    """The broker's topic rules: given, or its own defaults with ``topics`` as patterns
    (the transport defaults stay None: the server's settings for each transport)."""
    if isinstance(topics, TopicRules):
        return topics
    defaults = TopicOptions(
        retention=retention,
        auto_create=auto_create,
        max_payload=max_payload,
        dedupe_window=300.0,
        cache=False,
    )
    return TopicRules(defaults, topics)


def _encode(data: Any) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError as exc:
        raise InvalidMessage(f"data is not JSON-serializable: {exc}") from None


def _forget_fd(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    if not loop.is_closed():
        loop.remove_reader(fd)

"""The Redis commands of the backend, async (redis-py asyncio) and sync (for sync callers).

Every connection error or timeout becomes :class:`~fanwire.backends.BackendUnavailable`.
Clients never retry on their own: a failed publish is reported, never silently repeated
against a Redis that restarted empty.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .batcher import PublishBatcher
from .failures import DOWN, unavailable
from .ids import as_text, parse_id
from .scripts import (
    CONTROL_MAXLEN,
    CREATE,
    DELETE,
    DELETE_IDLE,
    PUBLISH,
    PUBLISH_MANY,
    PUBLISH_ONCE,
    Keys,
    publish_many_args,
)

__all__ = ["DOWN", "Commands", "Entry", "client_options", "unavailable"]

Entry = tuple[bytes, dict[bytes, bytes]]


def client_options(socket_timeout: float) -> dict[str, Any]:
    """Fail fast, never retry: the backend decides what a failure means."""
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 2.0,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
    }


class Commands:
    """One Redis deployment seen through the key scheme of :class:`Keys`."""

    def __init__(self, url: str, keys: Keys, maxlen: int, max_topics: int) -> None:
        self.url = url
        self.keys = keys
        self.maxlen = maxlen
        self.max_topics = max_topics
        self.client = aioredis.Redis.from_url(url, **client_options(3.0))
        self._publish = PublishBatcher(self.client, PUBLISH, PUBLISH_MANY)
        self._publish_once = self.client.register_script(PUBLISH_ONCE)
        #: JSON of the options given to create_topic for a topic ("": none).
        self.options_of: Callable[[str], str] = lambda topic: ""
        #: (retention, max_age) of a topic (its options; 0: the defaults).
        self.shape: Callable[[str], tuple[int, float]] = lambda topic: (0, 0.0)
        self._create = self.client.register_script(CREATE)
        self._delete = self.client.register_script(DELETE)
        self._delete_idle = self.client.register_script(DELETE_IDLE)
        self._publish_many = self.client.register_script(PUBLISH_MANY)
        self._sync: redis.Redis | None = None
        self._sync_scripts: dict[str, Any] = {}

    async def close(self) -> None:
        await self.client.aclose()
        if self._sync is not None:
            self._sync.close()

    # -- writes ------------------------------------------------------------------------
    def _publish_args(self, topic: str, payload: bytes, event: str) -> dict[str, Any]:
        keys = [self.keys.registry, self.keys.stream(topic), self.keys.seq(topic)]
        keys += [self.keys.ids, self.keys.clock]
        maxlen, max_age = self.shape(topic)
        args = [topic, maxlen or self.maxlen, payload, event, repr(time.time())]
        return {"keys": keys, "args": [*args, round(max_age * 1000)]}

    def _publish_once_args(
        self, topic: str, payload: bytes, event: str, key: str, window: float, max_keys: int
    ) -> dict[str, Any]:
        args = self._publish_args(topic, payload, event)
        args["keys"] += [self.keys.dedupe(topic), self.keys.dedupe_ids(topic)]
        args["args"] += [key, max(1, round(window * 1000)), max_keys]
        return args

    async def publish_once(
        self, topic: str, payload: bytes, event: str, key: str, window: float, max_keys: int
    ) -> tuple[str, bool] | None:
        """Publish unless ``key`` was used on ``topic`` within ``window`` seconds: (the
        id, whether it was a repeat), or None when the topic does not exist."""
        args = self._publish_once_args(topic, payload, event, key, window, max_keys)
        with unavailable("publish"):
            found = await self._publish_once(**args)
        return None if found is None else (as_text(found[0]), bool(found[1]))

    def publish_once_sync(
        self, topic: str, payload: bytes, event: str, key: str, window: float, max_keys: int
    ) -> tuple[str, bool] | None:
        args = self._publish_once_args(topic, payload, event, key, window, max_keys)
        found = self._run_sync("publish_once", "publish", args)
        return None if found is None else (as_text(found[0]), bool(found[1]))

    async def publish(self, topic: str, payload: bytes, event: str) -> str | None:
        """XADD to the topic's stream (pipelined with concurrent publishes); its id, or
        None when the topic does not exist."""
        found = await self._publish.run(**self._publish_args(topic, payload, event))
        return None if found is None else as_text(found)

    def submit_publish(self, topic: str, payload: bytes, event: str) -> asyncio.Future[Any]:
        """:meth:`publish` queued for the next pipeline without awaiting it: the future of
        the raw result (the id as bytes, or None when the topic does not exist)."""
        return self._publish.submit(**self._publish_args(topic, payload, event))

    def _publish_many_args(self, topic: str, items: list[tuple[bytes, str]]) -> dict[str, Any]:
        one = self._publish_args(topic, b"", "")
        stamp = repr(time.time())
        rows = [(payload, event, stamp) for payload, event in items]
        args = publish_many_args(topic, one["args"][1], one["args"][5], rows)
        return {"keys": one["keys"], "args": args}

    async def publish_many(self, topic: str, items: list[tuple[bytes, str]]) -> list[str] | None:
        """Every (payload, event) of ``items`` XADDed in order by one script (atomic, one
        round trip); the ids, or None when the topic does not exist (then none was)."""
        with unavailable("publish"):
            found = await self._publish_many(**self._publish_many_args(topic, items))
        return None if found is None else [as_text(item) for item in found]

    def publish_many_sync(self, topic: str, items: list[tuple[bytes, str]]) -> list[str] | None:
        found = self._run_sync("publish_many", "publish", self._publish_many_args(topic, items))
        return None if found is None else [as_text(item) for item in found]

    async def create(self, topic: str) -> tuple[int, str]:
        """(1 created, 0 existed, -1 too many topics; the control id to wait for)."""
        with unavailable("create topic"):
            status, control = await self._create(**self._topic_args(topic, True))
        return int(status), as_text(control)

    async def delete(self, topic: str) -> tuple[bool, str]:
        """(deleted, the control id to wait for)."""
        with unavailable("delete topic"):
            status, control = await self._delete(**self._topic_args(topic, False))
        return bool(status), as_text(control)

    async def delete_idle(self, topic: str) -> tuple[bool, str]:
        """Delete ``topic`` unless a node marked it active (the idle_ttl sweep)."""
        args = self._topic_args(topic, False)
        args["keys"].append(self.keys.active(topic))
        with unavailable("delete topic"):
            status, control = await self._delete_idle(**args)
        return bool(status), as_text(control)

    async def mark_active(self, topic: str, ttl: float) -> None:
        """This node has subscribers of ``topic``: no node deletes it for ``ttl`` s."""
        with unavailable("mark topic active"):
            await self.client.set(self.keys.active(topic), 1, px=max(1, round(ttl * 1000)))

    def _topic_args(self, topic: str, create: bool) -> dict[str, Any]:
        keys = [
            self.keys.registry,
            self.keys.control,
            self.keys.stream(topic),
            self.keys.seq(topic),
            self.keys.dedupe(topic),
            self.keys.dedupe_ids(topic),
        ]
        if create:
            args = [topic, self.max_topics, CONTROL_MAXLEN, self.options_of(topic)]
            return {"keys": keys, "args": args}
        return {"keys": keys, "args": [topic, CONTROL_MAXLEN]}

    # -- the sync twins (blocking; for callers outside the event loop) -----------------
    def sync_client(self) -> redis.Redis:
        if self._sync is None:
            self._sync = redis.Redis.from_url(self.url, **client_options(3.0))
            scripts = [("publish", PUBLISH), ("publish_many", PUBLISH_MANY)]
            scripts += [("create", CREATE), ("delete", DELETE), ("publish_once", PUBLISH_ONCE)]
            for name, lua in scripts:
                self._sync_scripts[name] = self._sync.register_script(lua)
        return self._sync

    def _run_sync(self, name: str, what: str, args: dict[str, Any]) -> Any:
        self.sync_client()
        with unavailable(what):
            return self._sync_scripts[name](**args)

    def publish_sync(self, topic: str, payload: bytes, event: str) -> str | None:
        found = self._run_sync("publish", "publish", self._publish_args(topic, payload, event))
        return None if found is None else as_text(found)

    def create_sync(self, topic: str) -> int:
        status, _ = self._run_sync("create", "create topic", self._topic_args(topic, True))
        return int(status)

    def delete_sync(self, topic: str) -> bool:
        status, _ = self._run_sync("delete", "delete topic", self._topic_args(topic, False))
        return bool(status)

    # -- reads -------------------------------------------------------------------------
    async def is_topic(self, topic: str) -> bool:
        with unavailable("topic lookup"):
            return bool(await self.client.sismember(self.keys.registry, topic))

    async def run_id(self) -> str:
        """The Redis server's run id: it changes when Redis restarts."""
        info = await self.client.info("server")
        return str(info["run_id"])

    async def snapshot(self) -> tuple[str, list[str]]:
        """(last control id, registered topics), read atomically."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xrevrange(self.keys.control, count=1)
            pipe.smembers(self.keys.registry)
            last, members = await pipe.execute()
        control = as_text(last[0][0]) if last else "0-0"
        return control, sorted(as_text(m) for m in members)

    async def last_ids(self, topics: list[str]) -> dict[str, tuple[str, int | None]]:
        """The newest entry of each topic's stream: (its id, its publish count), read
        atomically with the count ("0-0" when empty; count None if unknown)."""
        async with self.client.pipeline(transaction=True) as pipe:
            for topic in topics:
                pipe.xrevrange(self.keys.stream(topic), count=1)
                pipe.get(self.keys.seq(topic))
            replies = await pipe.execute()
        out: dict[str, tuple[str, int | None]] = {}
        for index, topic in enumerate(topics):
            newest, count = replies[2 * index], replies[2 * index + 1]
            if newest:
                out[topic] = (as_text(newest[0][0]), _int(newest[0][1].get(b"s")))
            else:  # empty: the next entry's count is the counter's next value
                out[topic] = ("0-0", _int(count) or 0)
        return out

    async def reregister(self, topics: list[str]) -> None:
        """Put ``topics`` back in the registry (after Redis restarted empty)."""
        if topics:
            await self.client.sadd(self.keys.registry, *topics)

    async def still_has(self, topic: str, last: str) -> tuple[bool, str | None]:
        """(whether entry ``last`` is still in the stream, the stream's first id)."""
        key = self.keys.stream(topic)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.xrange(key, last, last, count=1)
            pipe.xrange(key, count=1)
            found, first = await pipe.execute()
        return bool(found), as_text(first[0][0]) if first else None

    async def history(
        self, topic: str, after: str | None, cap: int, holders: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Up to ``cap`` newest entries after ``after`` (all retained if None), oldest
        first; with Redis's clock (ms), the stream's first id, whether it was trimmed, and
        whether each stream of ``holders`` holds the entry ``after`` ("held"), and the
        last id issued in the deployment ("last", None before any): entries of every
        topic up to it are in their streams by then, later ones get larger ids.
        """
        key = self.keys.stream(topic)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.time()
            pipe.get(self.keys.clock)
            pipe.xinfo_stream(key)
            pipe.xrevrange(key, "+", "-" if after is None else "(" + after, count=max(cap, 1))
            for holder in holders:
                if after is not None:
                    pipe.xrange(self.keys.stream(holder), after, after, count=1)
            replies = await pipe.execute(raise_on_error=False)
        (seconds, micros), clock, info, newest, *held = replies
        for reply in (clock, newest, *held):
            if isinstance(reply, Exception):
                raise reply
        stream = info if isinstance(info, dict) else {}  # an error: no such stream
        first = stream.get("first-entry")
        return {
            "now_ms": int(seconds) * 1000 + int(micros) // 1000,
            "first": as_text(first[0]) if first else None,
            "trimmed": int(stream.get("entries-added", 0)) > int(stream.get("length", 0)),
            "entries": list(reversed(newest)) if cap > 0 else [],
            "held": [bool(reply) for reply in held],
            "last": None if clock is None else parse_id(clock),
        }


def _int(raw: bytes | None) -> int | None:
    return int(raw) if raw is not None and raw.isdigit() else None

"""The per-process reader: one task follows the control stream and every local topic's
stream with ``XREAD BLOCK`` and feeds each entry to the local C++ core.

Local fan-out then stays in C++: an entry crosses into the core once, with its stream id
as the message id, and the core wakes this process's subscribers in batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis

from .. import _core
from .ids import ZERO, StreamKey, as_text, parse_id
from .scripts import Keys

log = logging.getLogger("fanwire.redis")

Entries = list[tuple[bytes, dict[bytes, bytes]]]


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
    ) -> None:
        self.core = core
        self.drain = drain
        self.keys = keys
        self.client = client
        self.count = count
        self.block_ms = block_ms
        #: topic -> id of the last entry fed to the core ("0-0": none yet).
        self.positions: dict[str, str] = {}
        #: topic -> the position the reader started from: the local ring never holds
        #: anything at or before it, so older resumes read their history from Redis.
        self.feed_start: dict[str, StreamKey] = {}
        #: topic -> this process's subscribers when its last message was fed.
        self.subscribers: dict[str, int] = {}
        #: id of the last control notice applied.
        self.control = "0-0"
        self._waiters: list[tuple[StreamKey, asyncio.Future[None]]] = []

    # -- what is followed --------------------------------------------------------------
    def follow(self, topic: str, after: str) -> None:
        """Create ``topic`` locally (if needed) and read its stream after ``after``."""
        self.core.create_topic(topic)
        if topic not in self.positions:
            self.positions[topic] = after
            self.feed_start[topic] = parse_id(after) or ZERO

    def forget(self, topic: str) -> None:
        """Stop reading ``topic`` and delete it locally (its subscribers are told)."""
        self.positions.pop(topic, None)
        self.feed_start.pop(topic, None)
        self.subscribers.pop(topic, None)
        self.core.delete_topic(topic)

    def last_fed(self, topic: str) -> StreamKey | None:
        position = self.positions.get(topic)
        return None if position is None else parse_id(position)

    # -- reading -----------------------------------------------------------------------
    async def read_once(self) -> None:
        """One ``XREAD BLOCK`` over the control stream and every followed stream."""
        streams = {self.keys.control: self.control}
        streams.update({self.keys.stream(t): p for t, p in self.positions.items()})
        reply = await self.client.xread(streams, count=self.count, block=self.block_ms)
        self.apply(reply.items() if isinstance(reply, dict) else reply or ())

    def apply(self, reply: Iterable[Any]) -> None:
        """Apply control notices first, then feed the messages of the other streams."""
        batches = [(as_text(key), entries) for key, entries in reply]
        touched: set[str] = set()
        for key, entries in batches:
            if key == self.keys.control:
                touched |= self._apply_control(entries)
        must_drain = False
        for key, entries in batches:
            topic = self.keys.topic_of(key)
            if key != self.keys.control and topic not in touched and topic in self.positions:
                must_drain |= self._feed(topic, entries)
        if must_drain:
            self.drain()
        self._wake_waiters()

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
                self.follow(topic, "0-0")
            elif op == "delete":
                self.forget(topic)
        return touched

    def _feed(self, topic: str, entries: Entries) -> bool:
        """Publish ``entries`` (newer than the position only) to the local core."""
        position = parse_id(self.positions[topic]) or ZERO
        must_drain = False
        for raw_id, fields in entries:
            key = parse_id(raw_id)
            if key is None or key <= position:
                continue
            message_id = as_text(raw_id)
            event = as_text(fields.get(b"e", b""))
            try:
                ts = float(fields.get(b"t", b"0") or 0)  # the publisher's time, as in history
                _, reached, drain = self.core.publish(
                    topic, fields.get(b"d", b"null"), event, message_id, True, ts
                )
                self.subscribers[topic] = reached
            except KeyError:
                self.positions.pop(topic, None)
                return must_drain
            except ValueError as exc:
                log.warning("skipping malformed entry %s of topic %r: %s", message_id, topic, exc)
                drain = False
            must_drain |= drain
            position = key
            self.positions[topic] = message_id
        return must_drain

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

"""Resume and replay on any node: what the local ring lacks is read from the stream.

A node's ring holds only what its reader fed since the node started following the topic.
When a client's resume id (``since``) is older than that, or the core says it is older
than the ring, or it is newer than anything this node has read, the missing history is
read with ``XREVRANGE`` and delivered first (encoded with ``_core.encode`` exactly like a
live message), then ``skip_through`` keeps the core from delivering any of it twice. A
``gap`` notice is sent when the stream no longer holds what followed the id, and when the
id is not of this log at all: not an entry of the topic's stream (an id of another run,
of a Redis that lost its data, of another deployment), since Redis ids alone cannot tell.
Even when the local ring holds everything after the id, the stream is asked whether it
holds the id (one round trip; the core's delivery waits for the answer).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import _core
from ..enums import Mode
from ..wire import Notices
from . import BackendUnavailable
from .commands import Commands, Entry
from .ids import ZERO, StreamKey, as_text, format_id, parse_id
from .reader import StreamReader

log = logging.getLogger("fanwire.redis")


@dataclass
class Replay:
    """What to deliver before the core's own messages, and the id to skip through.

    ``keys``: each item's id (ZERO for a notice: it goes first); ``frontier``: the last id
    of the deployment when the history was read, whose entries up to it it holds
    (None: no history read, or none issued yet by this version); ``end``: the id of the
    topic's ``end`` (:meth:`Broker.end`) among the items, if there.
    """

    items: list[Any] = field(default_factory=list)
    floor: str | None = None
    keys: list[StreamKey] = field(default_factory=list)
    frontier: StreamKey | None = None
    end: StreamKey | None = None


def encode(topic: str, entries: list[Entry], notices: Notices) -> list[Any]:
    """Each stream entry as the core would have encoded it, in the subscriber's form."""
    out: list[Any] = []
    for raw_id, fields in entries:
        ts = float(fields.get(b"t", b"0") or 0)
        encoded = _core.encode(
            topic, as_text(raw_id), fields.get(b"d", b"null"), as_text(fields.get(b"e", b"")), ts
        )
        out.append(notices.event(encoded.sse, encoded.ws))
    return out


def _replay(topic: str, entries: list[Entry], notices: Notices, found: dict[str, Any]) -> Replay:
    keys = [parse_id(raw_id) or ZERO for raw_id, _ in entries]
    ends = [i for i, (_, fields) in enumerate(entries) if fields.get(b"e") == b"end"]
    if ends and notices.mode is Mode.sse:
        # SSE: the end is the last thing of the topic a client gets, as the core's take
        # cuts a live run at it (Stream::take_topic); what was published after it stays
        # out (the caller's floor still skips it in the core).
        entries, keys = entries[: ends[0] + 1], keys[: ends[0] + 1]
        ends = ends[:1]
    replay = Replay(encode(topic, entries, notices), keys=keys, frontier=found["last"])
    replay.end = keys[ends[-1]] if ends else None
    return replay


def merge(
    replays: Sequence[tuple[_core.CoreSub, Replay]],
) -> tuple[list[Any], list[_core.CoreSub]]:
    """The items of several topics' histories in one id order; each core subscriber is
    set to go on after them. They were read one by one: only what every one of them
    holds is taken from them (up to the smallest frontier, which is after the last id
    issued when they subscribed), the rest comes from the core, which got it after.
    Also returns the subscribers whose topic's ``end`` is among the items."""
    cut = min((r.frontier for _, r in replays if r.frontier and r.floor), default=None)
    runs: list[list[tuple[StreamKey, Any]]] = []
    ended: list[_core.CoreSub] = []
    for core_sub, replay in replays:
        own = cut if cut is not None and replay.frontier and replay.floor else None
        if replay.end is not None and (own is None or replay.end <= own):
            ended.append(core_sub)
        runs.append(
            [
                (k, i)
                for k, i in zip(replay.keys, replay.items, strict=True)
                if own is None or k <= own
            ]
        )
        floor = replay.floor if own is None else format_id(own)
        if floor is not None:
            core_sub.skip_through(floor)
    return [item for _, item in heapq.merge(*runs, key=lambda run: run[0])], ended


class Resumer:
    """Decides when a subscription needs history from Redis, and fetches it."""

    def __init__(self, commands: Commands, reader: StreamReader, cap: int) -> None:
        self.commands = commands
        self.reader = reader
        self.cap = cap

    def start(
        self,
        topic: str,
        core_sub: _core.CoreSub,
        since: str | None,
        last_n: int,
        notices: Notices,
        group: Sequence[str] = (),
    ) -> asyncio.Task[Replay] | None:
        """A task fetching the history ``core_sub`` lacks, or None if the core has it all.

        ``group``: the topics resumed from the same ``since`` (one SSE stream's
        Last-Event-ID), whose streams may hold it: for the others it is a point in time.
        """
        if since is not None:
            key = parse_id(since)
            if key is not None:
                core_sub.skip_through(since)  # never twice, even what this node reads later
            fed = self.reader.last_fed(topic)
            start = self.reader.feed_start.get(topic, ZERO)
            hole = self.reader.hole_end.get(topic, ZERO)  # a resume before it needs Redis
            local = (
                not (key is None or core_sub.gap or key < start or fed is None or key > fed)
                and not key < hole
            )
            gap = Replay([notices.gap(topic, core_sub.first_available)], keys=[ZERO])
            # Several topics: their histories are merged (history.merge), so each is read.
            fetch = self._since(topic, since, notices, group, local and len(set(group)) < 2)
            # Redis down: trust the ring if it covers the id, else announce a gap.
            return asyncio.ensure_future(self._safely(fetch, Replay() if local else gap, topic))
        several = last_n > 0 and len(set(group)) > 1
        if several or (
            last_n > core_sub.pending and self.reader.feed_start.get(topic, ZERO) != ZERO
        ):
            fetch = self._last(topic, last_n, notices)
            return asyncio.ensure_future(self._safely(fetch, Replay(), topic))
        return None

    def _young(self, topic: str, entries: list[Entry], now_ms: int) -> tuple[list[Entry], bool]:
        """``entries`` without those older than the topic's ``max_age`` (``MINID ~``
        trims the stream only roughly), and whether any was left out."""
        max_age = self.commands.shape(topic)[1]
        if max_age <= 0:
            return entries, False
        cutoff = now_ms / 1000 - max_age
        young = [e for e in entries if float(e[1].get(b"t", b"0") or 0) >= cutoff]
        return young, len(young) < len(entries)

    async def _safely(self, fetch: Awaitable[Replay], fallback: Replay, topic: str) -> Replay:
        """``fetch``, or ``fallback`` (a gap notice for a resume) if Redis fails."""
        try:
            return await fetch
        except BackendUnavailable as exc:
            log.warning("history of %r unavailable: %s", topic, exc.message)
        except Exception:
            log.exception("reading the history of %r failed", topic)
        return fallback

    async def _since(
        self, topic: str, since: str, notices: Notices, group: Sequence[str], local: bool
    ) -> Replay:
        """History after ``since``; with ``local`` (the ring has it), only the checks."""
        key = parse_id(since)
        holders = [topic, *(t for t in group if t != topic)] if key else []
        cap = 0 if local else self.cap + 1
        found = await self.commands.history(topic, since if key else None, cap, holders)
        # Stream ids are Redis's clock: one from the future is not of this log.
        unknown = key is None or key[0] > found["now_ms"]
        if unknown and key is not None:
            found = await self.commands.history(topic, None, self.cap + 1)
        first = parse_id(found["first"])
        # Of this log: an entry of this stream, or (several topics resumed from one id)
        # of a sibling's stream, then a point in time here.
        foreign = key is not None and not any(found["held"])
        # Trimming removes the oldest entries: some after `since` may be gone only if the
        # stream was trimmed and now starts after it. (An id of another topic, e.g. on a
        # stream of several topics, is older than a young stream's first entry: no gap.)
        gap = (
            unknown
            or foreign
            or (found["trimmed"] and first is not None and key is not None and first > key)
        )
        if local and not gap:
            return Replay()
        if local:
            found = await self.commands.history(topic, since, self.cap + 1)
        entries, aged = self._young(topic, found["entries"], found["now_ms"])
        gap = gap or aged
        if len(entries) > self.cap:
            entries, gap = entries[-self.cap :], True
        replay = _replay(topic, entries, notices, found)
        if gap:
            first_available = as_text(entries[0][0]) if entries else None
            replay.items.insert(0, notices.gap(topic, first_available))
            replay.keys.insert(0, ZERO)
        replay.floor = as_text(entries[-1][0]) if entries else ("0-0" if unknown else since)
        return replay

    async def _last(self, topic: str, last_n: int, notices: Notices) -> Replay:
        found = await self.commands.history(topic, None, last_n)
        entries, _ = self._young(topic, found["entries"], found["now_ms"])
        replay = _replay(topic, entries, notices, found)
        replay.floor = as_text(entries[-1][0]) if entries else None
        return replay

"""The ``idle_ttl`` topic option: a topic with no subscriber and no publish for that long
is deleted, as by ``DELETE`` (its late subscribers get ``topic_deleted``).

One task per broker, on its loop, looks at the core's per-topic counts a few times per
``idle_ttl``: a topic is active when its publish count moved or it has subscribers. So
an idle topic goes between ``idle_ttl`` and ``idle_ttl * 1.25`` (plus a sweep) after its
last activity. In Redis mode every node sees every publish (its reader feeds them), but
only its own subscribers: a node with subscribers marks the topic active in Redis, and
the deletion is one script that skips a topic so marked, so it happens once, everywhere.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("fanwire")

#: Bounds of the time between two sweeps, seconds.
SWEEP_MIN, SWEEP_MAX = 0.05, 5.0


class IdleSweeper:
    """Deletes the broker's idle topics (see the module docstring)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        #: topic -> (publish count, monotonic time it was last seen active).
        self.seen: dict[str, tuple[int, float]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the sweep on ``loop`` (idempotent)."""
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def forget(self, topic: str) -> None:
        """``topic`` was deleted: a topic created anew under its name starts afresh."""
        self.seen.pop(topic, None)

    async def _run(self) -> None:
        interval = self.broker._shortest_idle_ttl() / 4
        while not self.broker.shutting_down:
            await asyncio.sleep(interval)
            try:
                interval = await self.sweep()
            except Exception:  # e.g. Redis down: try again next round
                log.warning("idle topic sweep failed", exc_info=True)

    async def sweep(self) -> float:
        """One round; the time until the next one."""
        broker = self.broker
        backend = broker.backend
        now = time.monotonic()
        interval = SWEEP_MAX
        alive: set[str] = set()
        for row in broker._core.topic_stats():
            ttl = broker.topic_options(row.name).idle_ttl
            if not ttl:
                continue
            alive.add(row.name)
            interval = min(interval, ttl / 4)
            prev = self.seen.get(row.name)
            if prev is None or prev[0] != row.messages or row.subscribers > 0:
                self.seen[row.name] = (row.messages, now)
                if row.subscribers > 0 and backend is not None:
                    await backend.mark_active(row.name, ttl)
                continue
            if now - prev[1] < ttl:
                continue
            self.seen.pop(row.name, None)
            if backend is not None:
                deleted = await backend.delete_idle(row.name)
                if deleted:
                    broker._deleted(row.name, True)
            else:
                deleted = await broker.adelete_topic(row.name)
            if deleted:
                log.info("topic %r deleted after %.1f s idle (idle_ttl)", row.name, ttl)
        for name in set(self.seen) - alive:
            del self.seen[name]
        return max(SWEEP_MIN, min(interval, self.broker._shortest_idle_ttl() / 4))

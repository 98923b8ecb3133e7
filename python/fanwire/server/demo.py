"""The demo producer (topic ``events``); the dashboard showing it is ``dashboard.py``."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable
from typing import Any

from redis.asyncio.lock import Lock
from redis.exceptions import RedisError

from ..broker import Broker
from ..errors import FanwireError, ShuttingDown, TopicNotFound


class Ticker:
    """Realistic-looking quotes: a random walk per symbol."""

    SYMBOLS = ("ACME", "GLOBX", "INITECH", "UMBRL", "WAYNE", "STARK")

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.prices = {s: self.rng.uniform(20, 400) for s in self.SYMBOLS}
        self.seq = 0

    def next(self) -> dict[str, Any]:
        symbol = self.rng.choice(self.SYMBOLS)
        old = self.prices[symbol]
        new = max(1.0, old * (1 + self.rng.gauss(0, 0.002)))
        self.prices[symbol] = new
        self.seq += 1
        return {
            "seq": self.seq,
            "symbol": symbol,
            "price": round(new, 2),
            "change": round(new - old, 4),
            "volume": self.rng.randrange(1, 50) * 100,
            "ts": time.time(),
        }


LEASE_TTL = 3.0  # seconds the demo lease outlives a node that died holding it


async def run_demo(broker: Broker, topic: str, rate: float) -> None:
    """Publish ``rate`` ticks per second to ``topic`` (recreating it if deleted), while
    it has a subscriber on some node (``broker.on_occupied``/``on_vacated`` wake it).

    In Redis mode every worker and host runs this, but only the one holding the lease
    ``<prefix>:lease:demo:<topic>`` publishes: N nodes still make one feed of ``rate``,
    and another node takes over within ``LEASE_TTL`` when that one stops.
    """
    if rate <= 0:
        return
    ticker = Ticker()
    backend = broker.backend
    changed = asyncio.Event()
    broker.on_occupied(topic, lambda _: changed.set())
    broker.on_vacated(topic, lambda _: changed.set())
    with contextlib.suppress(ShuttingDown):
        await _ensure(broker, topic)  # subscribers need it before the first tick
        if backend is None:
            while not broker.shutting_down:
                await _until_occupied(broker, topic, changed)
                await _tick(broker, topic, rate, ticker)
            return
        lease = backend.lease(f"demo:{topic}", LEASE_TTL)
        while not broker.shutting_down:
            # The hooks run on one node; the others see the cluster's count change.
            await _until_occupied(broker, topic, changed)
            if await _try(lease.acquire()):
                await _tick_while_held(broker, topic, rate, ticker, lease)
            await asyncio.sleep(LEASE_TTL / 3)


async def _ensure(broker: Broker, topic: str) -> None:
    """Create ``topic``, retrying while it cannot be (Redis not connected yet)."""
    await _create(broker, topic)
    while not broker.has_topic(topic) and not broker.shutting_down:
        await asyncio.sleep(0.2)
        await _create(broker, topic)


async def _until_occupied(broker: Broker, topic: str, changed: asyncio.Event) -> None:
    while broker.occupancy(topic) == 0 and not broker.shutting_down:
        changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), 0.5)


async def _tick(broker: Broker, topic: str, rate: float, ticker: Ticker) -> None:
    interval = max(1.0 / rate, 0.02)
    loop = asyncio.get_running_loop()
    start, sent = loop.time(), 0
    await _create(broker, topic)
    while not broker.shutting_down and broker.occupancy(topic) > 0:
        due = min(int((loop.time() - start) * rate) - sent, int(rate) + 1)
        for _ in range(max(0, due)):
            await _publish(broker, topic, ticker.next())
        sent += max(0, due)
        await asyncio.sleep(interval)


async def _tick_while_held(
    broker: Broker, topic: str, rate: float, ticker: Ticker, lease: Lock
) -> None:
    """Publish while the lease is renewed; stop as soon as it is lost (Redis down, or a
    pause longer than its TTL let another node take it)."""
    ticking = asyncio.create_task(_tick(broker, topic, rate, ticker))
    try:
        while not ticking.done():
            await asyncio.sleep(LEASE_TTL / 3)
            if not await _try(lease.reacquire()):
                return
    finally:
        ticking.cancel()
        await asyncio.gather(ticking, return_exceptions=True)
        await _try(lease.release())
    ticking.result()  # re-raise ShuttingDown


async def _try(pending: Awaitable[Any]) -> bool:
    """Whether a lease operation succeeded (Redis down or the lease lost: False)."""
    try:
        return bool(await pending)
    except RedisError:
        return False


async def _create(broker: Broker, topic: str) -> None:
    try:
        await broker.acreate_topic(topic)
    except ShuttingDown:
        raise
    except FanwireError:
        pass  # e.g. Redis not reachable yet (503): a later publish creates it


async def _publish(broker: Broker, topic: str, data: dict[str, Any]) -> None:
    """Async methods: in Redis mode they never block the loop (503 while Redis is down)."""
    try:
        await broker.apublish(topic, data)
    except TopicNotFound:
        await _create(broker, topic)
    except ShuttingDown:
        raise
    except FanwireError:
        pass

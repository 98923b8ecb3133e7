"""The demo producer (topic ``events``) and the live dashboard served at ``/``."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from .broker import Broker
from .errors import FanwireError, ShuttingDown, TopicNotFound

STATIC = Path(__file__).parent / "static"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


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


async def run_demo(broker: Broker, topic: str, rate: float) -> None:
    """Publish ``rate`` ticks per second to ``topic`` (recreating it if deleted)."""
    if rate <= 0:
        return
    ticker = Ticker()
    interval = max(1.0 / rate, 0.02)
    loop = asyncio.get_running_loop()
    start, sent = loop.time(), 0
    with contextlib.suppress(ShuttingDown):
        await _create(broker, topic)
        while not broker.shutting_down:
            due = min(int((loop.time() - start) * rate) - sent, int(rate) + 1)
            for _ in range(max(0, due)):
                await _publish(broker, topic, ticker.next())
            sent += max(0, due)
            await asyncio.sleep(interval)


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


def dashboard_router() -> APIRouter:
    """``GET /`` (the dashboard) and its assets under ``/static/``."""
    api = APIRouter(include_in_schema=False)

    @api.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @api.get("/static/{name}")
    async def asset(name: str) -> FileResponse:
        path = STATIC / name
        if "/" in name or path.suffix not in _TYPES or not path.is_file():
            raise HTTPException(404)
        return FileResponse(path, media_type=_TYPES[path.suffix])

    return api

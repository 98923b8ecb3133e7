"""A small stock-ticker service: an ordinary FastAPI app that mounts fanwire.

Quotes come in through the app's own route (``POST /quotes``, e.g. from an upstream
feed) and a background task publishes a market-status heartbeat; browsers and services
follow them over SSE (``GET /stream?topic=quotes``) or WebSocket (``/ws``), both served
by fanwire's router::

    uvicorn app:app --app-dir examples/user_app --port 8000
    curl -N 'localhost:8000/stream?topic=quotes&topic=market'
    curl -X POST localhost:8000/quotes -H 'content-type: application/json' \\
         -d '{"symbol": "ACME", "price": 12.5, "seq": 1}'

``examples/user_app/test_user_app.py`` stress-tests it with ``fanwire.testing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel, Field

import fanwire

settings = fanwire.Settings(demo_rate=0)  # no demo feed: this app has its own producers
broker = fanwire.Broker(retention=settings.retention, max_payload=settings.max_payload)


class Quote(BaseModel):
    """One price update from the upstream feed; ``seq`` is the feed's sequence number."""

    symbol: str = Field(pattern=r"^[A-Z]{1,8}$")
    price: float = Field(gt=0)
    seq: int = Field(ge=0)


async def market_status(every: float = 1.0) -> None:
    """Background task: publish the market status on ``market`` every ``every`` s."""
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(fanwire.ShuttingDown):
            broker.publish("market", {"open": True, "time": time.time()}, event="status")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The app's own startup and shutdown, with fanwire's inside."""
    async with fanwire.lifespan(broker, settings):
        broker.create_topic("quotes")
        broker.create_topic("market")
        status = asyncio.create_task(market_status())
        yield
        status.cancel()
        await asyncio.gather(status, return_exceptions=True)


app = FastAPI(title="ticker", lifespan=lifespan)
app.include_router(fanwire.router(broker, settings))


@app.post("/quotes", status_code=202)
async def post_quote(quote: Quote) -> dict[str, str]:
    """Accept a quote from the feed and fan it out to every subscriber of ``quotes``."""
    message_id = broker.publish("quotes", quote.model_dump(), event="quote")
    return {"message_id": message_id}


@app.get("/symbols")
async def symbols() -> dict[str, list[str]]:
    """One of the app's ordinary routes."""
    return {"symbols": ["ACME", "GLOBEX", "INITECH"]}

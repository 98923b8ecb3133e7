"""An existing FastAPI app that mounts fanwire: its router, its lifespan, and publishing
from a route and from a background thread.

    uvicorn embed_app:app --app-dir examples --port 8000

Then ``curl -N 'localhost:8000/stream?topic=clock&topic=orders'`` shows the clock ticking
(published by a thread) and every ``POST /orders`` (published by a route).
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel

import fanwire
from fanwire import lifespan as fanwire_lifespan
from fanwire.settings import Settings

settings = Settings(demo_rate=0)  # this app has its own producers
broker = fanwire.Broker(retention=settings.retention, max_payload=settings.max_payload)


def clock(stop: threading.Event) -> None:
    """Publish the time every 0.2 s from a plain thread (``publish`` is thread-safe)."""
    tick = 0
    while not stop.wait(0.2):
        tick += 1
        try:
            broker.publish("clock", {"tick": tick, "time": time.time()}, event="tick")
        except fanwire.ShuttingDown:
            return


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The app's own startup and shutdown, with fanwire's inside."""
    async with fanwire_lifespan(broker, settings):
        broker.create_topic("clock")
        broker.create_topic("orders")
        stop = threading.Event()
        thread = threading.Thread(target=clock, args=(stop,), daemon=True)
        thread.start()
        yield
        stop.set()
        thread.join(5)


app = FastAPI(title="shop", lifespan=lifespan)
app.include_router(fanwire.router(broker, settings))


class Order(BaseModel):
    item: str
    qty: int


@app.get("/hello")
async def hello() -> dict[str, str]:
    """One of the app's own routes."""
    return {"hello": "world"}


@app.post("/orders", status_code=201)
async def place_order(order: Order) -> dict[str, str]:
    """Store the order (not shown) and tell every subscriber of ``orders``."""
    message_id = broker.publish("orders", order.model_dump(), event="order_placed")
    return {"status": "placed", "message_id": message_id}

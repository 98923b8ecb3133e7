"""A user's app for tests/test_ai_streams.py: fanwire's server plus routes of its own that
stream through ``fastapi.sse`` with :func:`fanwire.sse.events` (``GET`` and ``POST``), and
a producer route that ends a topic (``broker.aend``). Settings come from ``FANWIRE_*``
(``FANWIRE_REDIS_URL`` makes it one node of a Redis deployment)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Header, Query
from fastapi.sse import EventSourceResponse

import fanwire
import fanwire.sse
from fanwire.settings import Settings

app = fanwire.create_app(Settings())
broker: fanwire.Broker = app.state.broker

Resume = Annotated[str | None, Header(alias="Last-Event-ID")]


async def _events(
    topic: list[str], last_n: int, policy: str, queue_size: int, resume: str | None
) -> AsyncIterator[Any]:
    async for event in fanwire.sse.events(
        broker, topic, last_event_id=resume, last_n=last_n, policy=policy, queue_size=queue_size
    ):
        yield event


@app.get("/answers", response_class=EventSourceResponse)
async def answers_get(
    topic: Annotated[list[str], Query()],
    last_n: int = 0,
    policy: str = "disconnect",
    queue_size: int = 100,
    last_event_id: Resume = None,
) -> AsyncIterator[Any]:
    async for event in _events(topic, last_n, policy, queue_size, last_event_id):
        yield event


@app.post("/answers", response_class=EventSourceResponse)
async def answers_post(
    topic: Annotated[list[str], Query()],
    last_n: int = 0,
    last_event_id: Resume = None,
) -> AsyncIterator[Any]:
    async for event in _events(topic, last_n, "disconnect", 100, last_event_id):
        yield event


@app.post("/end/{topic}")
async def end(topic: str) -> dict[str, str]:
    return {"message_id": await broker.aend(topic, {"done": True})}


@app.post("/burst/{topic}")
async def burst(topic: str, n: int, pad: int = 0) -> dict[str, int]:
    """The producer publishes ``n`` messages at once, never waiting for a reader."""
    for i in range(n):
        await broker.apublish(topic, {"i": i, "pad": "x" * pad})
    return {"published": n}

"""fanwire embedded in a FastAPI app that streams per-request answers (bench/per_request.py).

``POST /answer {"topic": T, "tokens": N}`` creates topic T and starts a task that waits
for T's first subscriber, publishes N tokens (``{"token": " the", "i": k}``) with
``broker.apublish`` and then ends T with ``broker.aend``. The client reads them either
from fanwire's own ``GET /stream?topic=T`` or from this app's ``GET /answers/T``, a
``fastapi.sse`` route that yields ``fanwire.sse.events(broker, T)``; both end on
``event: end``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.sse import EventSourceResponse
from pydantic import BaseModel

import fanwire
import fanwire.sse

from .common import serve

broker = fanwire.Broker()
# A whole answer fits a reader's queue: the producer publishes it as fast as it can, and
# the default SSE queue (100, disconnect) would end a reader that is not ahead of it.
QUEUE = 1000
settings = fanwire.Settings(demo_rate=0, sse_queue_size=QUEUE)  # /stream's queue too
_tasks: set[asyncio.Task[None]] = set()  # held so they are not collected while running


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with fanwire.lifespan(broker, settings):
        yield


app = FastAPI(lifespan=lifespan)
app.include_router(fanwire.router(broker, settings))


class Answer(BaseModel):
    topic: str
    tokens: int


async def _produce(topic: str, tokens: int) -> None:
    for _ in range(5000):  # up to 5 s for the client's GET to subscribe
        if broker.occupancy(topic):
            break
        await asyncio.sleep(0.001)
    for i in range(tokens):  # "i": the client checks each token arrived exactly once
        await broker.apublish(topic, {"token": " the", "i": i})
    await broker.aend(topic)


@app.post("/answer", status_code=202)
async def answer(body: Answer) -> dict[str, str]:
    await broker.acreate_topic(body.topic)
    task = asyncio.create_task(_produce(body.topic, body.tokens))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return {"topic": body.topic}


@app.get("/answers/{topic}", response_class=EventSourceResponse)
async def answers(topic: str) -> AsyncIterator[Any]:
    """The user's own route (README "Streaming AI answers"): FastAPI writes the frames."""
    async for event in fanwire.sse.events(broker, topic, queue_size=QUEUE):
        yield event


if __name__ == "__main__":
    serve(app, __doc__.splitlines()[0])

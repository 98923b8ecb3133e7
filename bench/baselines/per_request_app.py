"""fanwire embedded in a FastAPI app that streams per-request answers (bench/per_request.py).

``POST /answer {"topic": T, "tokens": N}`` creates topic T and starts a task that waits
for T's first subscriber, publishes N tokens with ``broker.apublish`` and then deletes T
(``broker.end`` / ``fanwire.sse`` are not on main yet: deleting the topic is what ends
the client's stream). The client reads them from fanwire's own ``GET /stream?topic=T``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel

import fanwire

from .common import serve

broker = fanwire.Broker()
settings = fanwire.Settings(demo_rate=0)
TOKEN = {"token": " the"}
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
    for _ in range(5000):  # up to 5 s for the client's GET /stream to subscribe
        if broker.occupancy(topic):
            break
        await asyncio.sleep(0.001)
    for _ in range(tokens):
        await broker.apublish(topic, TOKEN)
    await broker.adelete_topic(topic)


@app.post("/answer", status_code=202)
async def answer(body: Answer) -> dict[str, str]:
    await broker.acreate_topic(body.topic)
    task = asyncio.create_task(_produce(body.topic, body.tokens))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return {"topic": body.topic}


if __name__ == "__main__":
    serve(app, __doc__.splitlines()[0])

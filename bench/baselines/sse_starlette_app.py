"""sse-starlette's `EventSourceResponse`, fed by an `asyncio.Queue(maxsize=100)` per client.

A publish `put_nowait`s the message (id and JSON data, encoded once) into every
subscriber's queue, dropping it on `QueueFull` (counted in `/stats`); each client's
generator yields one dict per message and sse-starlette encodes and sends the frame
(with its own keep-alive pings and disconnect handling). SSE only.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Query
from sse_starlette import EventSourceResponse

from .common import QUEUE_SIZE, SSE_HEADERS, PublishBody, Topics, dumps, serve

Event = dict[str, str]
ClientQueue = asyncio.Queue[Event]

topics = Topics()
subscribers: dict[str, set[ClientQueue]] = defaultdict(set)
app = FastAPI(title="sse-starlette baseline")
app.include_router(topics.router(lambda: sum(len(s) for s in subscribers.values())))


@app.post("/topics/{name}/messages", status_code=202)
async def publish(name: str, body: PublishBody) -> dict[str, Any]:
    topics.require(name)
    message_id = topics.next_id()
    event = {
        "id": message_id,
        "event": body.event or "message",
        "data": dumps({"topic": name, "data": body.data, "ts": time.time()}),
    }
    for queue in subscribers.get(name, set()):
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            topics.dropped += 1
    return {"message_id": message_id, "subscribers": len(subscribers.get(name, ()))}


@app.get("/stream")
async def stream(topic: list[str] = Query(["events"])) -> EventSourceResponse:  # noqa: B008
    for name in topic:
        topics.require(name)
    queue: ClientQueue = asyncio.Queue(maxsize=QUEUE_SIZE)
    for name in topic:
        subscribers[name].add(queue)
    return EventSourceResponse(events(queue, topic), headers=SSE_HEADERS)


async def events(queue: ClientQueue, names: list[str]) -> AsyncIterator[Event]:
    try:
        while True:
            yield await queue.get()
    finally:
        for name in names:
            subscribers[name].discard(queue)


if __name__ == "__main__":
    serve(app, __doc__ or "")

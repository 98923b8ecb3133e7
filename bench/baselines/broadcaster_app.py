"""`broadcaster` with its in-memory backend (`Broadcast("memory://")`) feeding SSE.

A publish encodes the SSE frame once and hands it to `broadcast.publish`; broadcaster's
listener task copies each event into every subscriber's (unbounded) queue, and each
client's `StreamingResponse` generator iterates its `broadcast.subscribe(...)`. This is
the library's own design: nothing is dropped, a slow client's queue grows instead.
SSE only, one topic per stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from broadcaster import Broadcast
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from .common import SSE_HEADERS, Message, PublishBody, Topics, serve

broadcast = Broadcast("memory://")
topics = Topics()
streams = {"open": 0}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await broadcast.connect()
    try:
        yield
    finally:
        await broadcast.disconnect()


app = FastAPI(title="broadcaster baseline", lifespan=lifespan)
app.include_router(topics.router(lambda: streams["open"]))


@app.post("/topics/{name}/messages", status_code=202)
async def publish(name: str, body: PublishBody) -> dict[str, Any]:
    topics.require(name)
    message = Message(name, body.data, body.event, topics.next_id())
    await broadcast.publish(channel=name, message=message.sse)
    return {"message_id": message.message_id, "subscribers": streams["open"]}


@app.get("/stream")
async def stream(topic: str = "events") -> StreamingResponse:
    topics.require(topic)
    return StreamingResponse(frames(topic), media_type="text/event-stream", headers=SSE_HEADERS)


async def frames(topic: str) -> AsyncIterator[str]:
    streams["open"] += 1
    try:
        async with broadcast.subscribe(channel=topic) as subscriber:
            yield "retry: 3000\n\n"
            async for event in subscriber:  # type: ignore[union-attr]
                yield event.message
    finally:
        streams["open"] -= 1


if __name__ == "__main__":
    serve(app, __doc__ or "")

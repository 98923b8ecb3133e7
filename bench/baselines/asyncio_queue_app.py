"""The pure-asyncio design that fanwire replaces, written minimally and faithfully.

Every client (SSE or WebSocket) owns an `asyncio.Queue(maxsize=100)`. A publish encodes
the message once and `put_nowait`s it into the queue of every subscriber of the topic;
a full queue drops the message for that client (counted in `/stats`). Each client's
coroutine awaits its queue and writes one chunk (SSE) or one text frame (WebSocket) per
message.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from .common import QUEUE_SIZE, SSE_HEADERS, TOPIC_RE, Message, PublishBody, Topics, dumps, serve

ClientQueue = asyncio.Queue[str]


class Hub:
    """Topic name -> the queues of its subscribers."""

    def __init__(self) -> None:
        self.topics = Topics()
        self.subscribers: dict[str, set[tuple[ClientQueue, bool]]] = defaultdict(set)

    def count(self) -> int:
        return sum(len(subs) for subs in self.subscribers.values())

    def publish(self, topic: str, data: Any, event: str | None) -> tuple[str, int]:
        message = Message(topic, data, event, self.topics.next_id())
        subs = self.subscribers.get(topic, set())
        for queue, is_ws in subs:
            try:
                queue.put_nowait(message.ws if is_ws else message.sse)
            except asyncio.QueueFull:
                self.topics.dropped += 1
        return message.message_id, len(subs)


hub = Hub()
app = FastAPI(title="asyncio.Queue baseline")
app.include_router(hub.topics.router(hub.count))


@app.post("/topics/{name}/messages", status_code=202)
async def publish(name: str, body: PublishBody) -> dict[str, Any]:
    hub.topics.require(name)
    message_id, subscribers = hub.publish(name, body.data, body.event)
    return {"message_id": message_id, "subscribers": subscribers}


@app.get("/stream")
async def stream(topic: list[str] = Query(["events"])) -> StreamingResponse:  # noqa: B008
    for name in topic:
        hub.topics.require(name)
    queue: ClientQueue = asyncio.Queue(maxsize=QUEUE_SIZE)
    for name in topic:
        hub.subscribers[name].add((queue, False))
    return StreamingResponse(
        sse_frames(queue, topic), media_type="text/event-stream", headers=SSE_HEADERS
    )


async def sse_frames(queue: ClientQueue, topics: list[str]) -> AsyncIterator[str]:
    try:
        yield "retry: 3000\n\n"
        while True:
            yield await queue.get()
    finally:
        for name in topics:
            hub.subscribers[name].discard((queue, False))


@app.websocket("/ws")
async def websocket(ws: WebSocket) -> None:
    await ws.accept()
    queue: ClientQueue = asyncio.Queue(maxsize=QUEUE_SIZE)
    subscribed: set[str] = set()
    await queue.put(dumps({"type": "info", "message": "connected", "client_id": str(id(ws))}))
    sender = asyncio.create_task(send_loop(ws, queue))
    try:
        while True:
            await handle(await ws.receive_text(), queue, subscribed)
    except WebSocketDisconnect:
        pass
    finally:
        sender.cancel()
        for name in subscribed:
            hub.subscribers[name].discard((queue, True))


async def send_loop(ws: WebSocket, queue: ClientQueue) -> None:
    while True:
        await ws.send_text(await queue.get())


async def handle(text: str, queue: ClientQueue, subscribed: set[str]) -> None:
    """The subset of PROTOCOL.md's client messages the benchmark uses."""
    try:
        msg = json.loads(text)
        kind, topic = msg.get("type"), msg.get("topic", "")
    except (ValueError, AttributeError):
        await queue.put(dumps({"type": "error", "code": "INVALID_JSON", "message": "bad json"}))
        return
    reply: dict[str, Any] = {"type": "ack", "request_type": kind, "topic": topic}
    if "request_id" in msg:
        reply["request_id"] = msg["request_id"]
    known = bool(TOPIC_RE.match(topic)) and topic in hub.topics.names
    if kind in ("subscribe", "publish") and not known:
        reply.update(type="error", code="TOPIC_NOT_FOUND", message=topic)
    elif kind == "subscribe":
        await queue.put(dumps(reply))  # the ack comes before any event
        subscribed.add(topic)
        hub.subscribers[topic].add((queue, True))
        return
    elif kind == "unsubscribe":
        subscribed.discard(topic)
        hub.subscribers[topic].discard((queue, True))
    elif kind == "publish":
        reply["message_id"], _ = hub.publish(topic, msg.get("data"), msg.get("event"))
    elif kind == "ping":
        reply = {"type": "pong", "request_id": msg.get("request_id")}
    await queue.put(dumps(reply))


if __name__ == "__main__":
    serve(app, __doc__ or "")

"""A tiny fan-out app that speaks a subset of PROTOCOL.md, for the plugin's own tests.

It is *not* fanwire: it lets ``tests/test_testing_plugin.py`` exercise the servers,
clients and assertions of :mod:`fanwire.testing` for real before fanwire's server exists.
Run it with ``python -m uvicorn selftest_app:app --app-dir tests``.

Environment switches (for testing the plugin's error paths):
``SELFTEST_FAIL_AT_START=1`` fails startup; ``SELFTEST_HEALTH_DELAY=S`` answers 503 on
``/health`` for S seconds; ``SELFTEST_IGNORE_SIGTERM=1`` ignores SIGTERM;
``SELFTEST_HEARTBEAT=S`` sets the SSE heartbeat interval (default 15 s).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI, Header, HTTPException, Query, Request, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.websockets import WebSocketDisconnect

EPOCH = format(int(time.time() * 1000), "x")


@dataclass
class Message:
    """One published message."""

    id: str
    seq: int
    topic: str
    event: str | None
    data: Any
    ts: float


@dataclass(eq=False)
class Sink:
    """A subscriber's bounded queue (policy drop_oldest) and its wake-up."""

    size: int
    queue: deque[Message] = field(default_factory=deque)
    dropped: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, message: Message) -> None:
        """Queue a message, dropping the oldest queued one when full."""
        if len(self.queue) >= self.size:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(message)
        self.ready.set()


@dataclass
class State:
    """All topics, their logs and subscribers."""

    seq: int = 0
    logs: dict[str, list[Message]] = field(default_factory=dict)
    sinks: dict[str, set[Sink]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)

    def publish(self, topic: str, data: Any, event: str | None = None) -> Message:
        """Append to the topic's log and hand to every subscriber."""
        self.seq += 1
        message = Message(f"{EPOCH}-{self.seq}", self.seq, topic, event, data, time.time())
        self.logs[topic].append(message)
        for sink in self.sinks[topic]:
            sink.put(message)
        return message

    def after(self, topic: str, last_id: str | None, last_n: int) -> tuple[list[Message], bool]:
        """Retained messages to replay, and whether the id was unknown (a gap)."""
        log = self.logs[topic]
        if last_id is not None:
            for index, message in enumerate(log):
                if message.id == last_id:
                    return log[index + 1 :], False
            return list(log), True
        return (log[-last_n:] if last_n > 0 else []), False


STATE = State()


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    """Apply the environment switches; end streams on SIGTERM."""
    if os.environ.get("SELFTEST_FAIL_AT_START") == "1":
        raise RuntimeError("selftest app told to fail at start")
    loop = asyncio.get_running_loop()
    previous: Any = signal.getsignal(signal.SIGTERM)
    if os.environ.get("SELFTEST_IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif callable(previous):
        chained: Callable[[int, Any], Any] = previous

        def shut_down() -> None:
            STATE.shutdown.set()
            for sinks in STATE.sinks.values():
                for sink in sinks:
                    sink.ready.set()

        def on_term(signum: int, frame: Any) -> None:
            loop.call_soon_threadsafe(shut_down)
            chained(signum, frame)

        signal.signal(signal.SIGTERM, on_term)
    STATE.logs.setdefault("events", [])
    STATE.sinks.setdefault("events", set())
    yield


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> JSONResponse:
    """200 once the optional startup delay is over."""
    delay = float(os.environ.get("SELFTEST_HEALTH_DELAY", "0"))
    if time.monotonic() - STATE.started < delay:
        return JSONResponse({"status": "starting"}, status_code=503)
    return JSONResponse({"status": "healthy", "topic_count": len(STATE.logs)})


@app.post("/topics", status_code=201)
async def create_topic(body: dict[str, Any]) -> dict[str, Any]:
    """Create a topic (idempotent)."""
    name = str(body["name"])
    created = name not in STATE.logs
    STATE.logs.setdefault(name, [])
    STATE.sinks.setdefault(name, set())
    return {"name": name, "created": created}


def _topic(name: str) -> str:
    if name not in STATE.logs:
        raise HTTPException(404, f"no topic {name}")
    return name


@app.post("/topics/{name}/messages", status_code=202)
async def publish(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """Publish one message."""
    message = STATE.publish(_topic(name), body.get("data"), body.get("event"))
    return {"message_id": message.id, "subscribers": len(STATE.sinks[name])}


@app.post("/topics/{name}/burst")
async def burst(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """Publish ``count`` messages of about ``size`` bytes at once; return their ids."""
    filler = "x" * int(body.get("size", 10))
    ids = [STATE.publish(_topic(name), {"i": i, "pad": filler}).id for i in range(body["count"])]
    return {"message_ids": ids}


def _frame(message: Message) -> bytes:
    payload = {"topic": message.topic, "data": message.data, "ts": message.ts}
    return (
        f"id: {message.id}\nevent: {message.event or 'message'}\ndata: ".encode()
        + orjson.dumps(payload)
        + b"\n\n"
    )


def _control(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


@app.get("/stream")
async def stream(
    request: Request,
    topic: list[str] = Query(default=["events"]),  # noqa: B008
    last_n: int = 0,
    last_event_id: str | None = None,
    queue_size: int = 100,
    last_event_id_header: str | None = Header(default=None, alias="Last-Event-ID"),
) -> StreamingResponse:
    """SSE: replay (last_n or after an id), then live messages, heartbeats, gaps."""
    topics = [_topic(t) for t in topic]
    resume = last_event_id_header or last_event_id
    sink = Sink(size=queue_size)
    replay: list[bytes] = []
    backlog: list[Message] = []
    for name in topics:
        messages, gap = STATE.after(name, resume, last_n)
        if gap:
            first = messages[0].id if messages else None
            replay.append(_control("gap", {"topic": name, "first_available": first}))
        backlog += messages
        STATE.sinks[name].add(sink)
    backlog.sort(key=lambda m: m.seq)
    heartbeat = float(os.environ.get("SELFTEST_HEARTBEAT", "15"))

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 1000\n\n" + b"".join(replay) + b"".join(map(_frame, backlog))
            while True:
                try:
                    await asyncio.wait_for(sink.ready.wait(), heartbeat)
                    idle = False
                except TimeoutError:
                    idle = True
                if STATE.shutdown.is_set():
                    yield _control("shutdown", {})
                    return
                if idle:
                    yield _control("heartbeat", {"ts": time.time()})
                    continue
                sink.ready.clear()
                chunk = b""
                if sink.dropped:
                    chunk += _control("gap", {"topic": topics[0], "dropped": sink.dropped})
                    sink.dropped = 0
                while sink.queue:
                    chunk += _frame(sink.queue.popleft())
                yield chunk
        finally:
            for name in topics:
                STATE.sinks[name].discard(sink)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(frames(), media_type="text/event-stream", headers=headers)


def _event_json(message: Message) -> str:
    out: dict[str, Any] = {
        "type": "event",
        "topic": message.topic,
        "message_id": message.id,
        "data": message.data,
        "ts": message.ts,
    }
    if message.event:
        out["event"] = message.event
    return orjson.dumps(out).decode()


@app.websocket("/ws")
async def websocket(ws: WebSocket) -> None:
    """WebSocket: subscribe (with last_n/since), unsubscribe, publish, ping."""
    await ws.accept()
    sinks: dict[str, Sink] = {}
    lock = asyncio.Lock()

    async def send(obj: dict[str, Any]) -> None:
        async with lock:
            await ws.send_text(orjson.dumps(obj).decode())

    await send({"type": "info", "message": "connected", "client_id": "selftest"})

    async def pump(name: str, sink: Sink) -> None:
        while True:
            await sink.ready.wait()
            sink.ready.clear()
            async with lock:
                while sink.queue:
                    await ws.send_text(_event_json(sink.queue.popleft()))

    tasks: dict[str, asyncio.Task[None]] = {}
    try:
        while True:
            try:
                msg = orjson.loads(await ws.receive_text())
            except orjson.JSONDecodeError:
                await send({"type": "error", "code": "INVALID_JSON", "message": "bad json"})
                continue
            rid = msg.get("request_id") if isinstance(msg, dict) else None
            kind = msg.get("type") if isinstance(msg, dict) else None
            name = msg.get("topic") if isinstance(msg, dict) else None
            if kind == "ping":
                await send({"type": "pong", "request_id": rid})
            elif kind in ("subscribe", "publish", "unsubscribe") and name not in STATE.logs:
                await send(
                    {
                        "type": "error",
                        "code": "TOPIC_NOT_FOUND",
                        "message": "no topic",
                        "request_id": rid,
                    }
                )
            elif kind == "subscribe" and name is not None:
                sink = Sink(size=int(msg.get("queue_size") or 1000))
                async with lock:
                    messages, _ = STATE.after(name, msg.get("since"), int(msg.get("last_n", 0)))
                    STATE.sinks[name].add(sink)
                    sinks[name] = sink
                    await ws.send_text(
                        orjson.dumps(
                            {
                                "type": "ack",
                                "request_type": "subscribe",
                                "topic": name,
                                "message": "subscribed",
                                "request_id": rid,
                            }
                        ).decode()
                    )
                    for message in messages:
                        await ws.send_text(_event_json(message))
                tasks[name] = asyncio.create_task(pump(name, sink))
            elif kind == "unsubscribe" and name is not None:
                if name in tasks:
                    tasks.pop(name).cancel()
                    STATE.sinks[name].discard(sinks.pop(name))
                await send(
                    {
                        "type": "ack",
                        "request_type": "unsubscribe",
                        "topic": name,
                        "message": "unsubscribed",
                        "request_id": rid,
                    }
                )
            elif kind == "publish" and name is not None:
                message = STATE.publish(name, msg.get("data"), msg.get("event"))
                await send(
                    {
                        "type": "ack",
                        "request_type": "publish",
                        "topic": name,
                        "message": "published",
                        "message_id": message.id,
                        "request_id": rid,
                    }
                )
            else:
                await send(
                    {
                        "type": "error",
                        "code": "INVALID_MESSAGE",
                        "message": "bad message",
                        "request_id": rid,
                    }
                )
    except WebSocketDisconnect:
        pass
    finally:
        for task in tasks.values():
            task.cancel()
        for name, sink in sinks.items():
            STATE.sinks[name].discard(sink)

"""What every baseline server shares, so that they differ only in how they fan out.

Each one serves the subset of fanwire's PROTOCOL.md that the benchmark uses:
`POST /topics`, `POST /topics/{name}/messages`, `GET /health`, `GET /stats`, and
`GET /stream?topic=...` (plus `/ws` where the design has one).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException
from pydantic import BaseModel

TOPIC_RE = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
QUEUE_SIZE = 100  # per client, as in the design fanwire replaces
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class TopicBody(BaseModel):
    name: str


class PublishBody(BaseModel):
    data: Any
    event: str | None = None


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Message:
    """One published message, encoded once for every transport."""

    def __init__(self, topic: str, data: Any, event: str | None, message_id: str) -> None:
        ts = time.time()
        self.message_id = message_id
        self.sse = (
            f"id: {message_id}\nevent: {event or 'message'}\n"
            f"data: {dumps({'topic': topic, 'data': data, 'ts': ts})}\n\n"
        )
        body = {"type": "event", "topic": topic, "message_id": message_id, "data": data, "ts": ts}
        if event:
            body["event"] = event
        self.ws = dumps(body)


class Topics:
    """Topic names, the id counter and the drop counter of one server."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.dropped = 0
        self.started = time.time()
        self._ids = itertools.count(1)

    def next_id(self) -> str:
        return str(next(self._ids))

    def require(self, name: str) -> None:
        if not TOPIC_RE.match(name):
            raise HTTPException(400, "invalid topic name")
        if name not in self.names:
            raise HTTPException(404, f"no such topic: {name}")

    def router(self, subscriber_count: Callable[[], int]) -> APIRouter:
        router = APIRouter()

        @router.post("/topics", status_code=201)
        async def create_topic(body: TopicBody) -> dict[str, Any]:
            if not TOPIC_RE.match(body.name):
                raise HTTPException(400, "invalid topic name")
            created = body.name not in self.names
            self.names.add(body.name)
            return {"name": body.name, "created": created}

        @router.get("/health")
        async def health() -> dict[str, Any]:
            return {
                "status": "healthy",
                "uptime_seconds": time.time() - self.started,
                "topic_count": len(self.names),
                "active_subscriber_count": subscriber_count(),
            }

        @router.get("/stats")
        async def stats() -> dict[str, Any]:
            return {"dropped_count": self.dropped, "subscribers": subscriber_count()}

        return router


def serve(app: FastAPI, description: str) -> None:
    """Command line: `python -m bench.baselines.NAME --host 127.0.0.1 --port P`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)

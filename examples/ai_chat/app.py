"""Streaming AI answers with fanwire: one topic per answer, resumable, on any worker.

    uvicorn app:app --app-dir examples/ai_chat --port 8000
    FANWIRE_REDIS_URL=redis://localhost:6379 uvicorn app:app --app-dir examples/ai_chat --workers 2

``POST /chat`` starts a generation (a deterministic fake model, :mod:`tokens`) that
publishes each token to the topic ``chat.<id>`` and ends it with ``broker.aend``; it
answers with the stream's URL. ``GET /chat/{id}/stream`` is a ``fastapi.sse`` route over
:func:`fanwire.sse.events`: with ``Last-Event-ID`` (or ``last_event_id``) it resumes after
that token, with ``replay=1`` it sends the whole answer so far, then live tokens, then
``event: end``. ``GET /`` is the page: reload it mid-answer and it resumes from the last
token it kept (sessionStorage); another tab gets the whole answer.
``AI_CHAT_TOKENS`` and ``AI_CHAT_DELAY`` (seconds per token) set the fake model's pace.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import HTMLResponse
from fastapi.sse import EventSourceResponse
from pydantic import BaseModel
from tokens import tokens

import fanwire
import fanwire.sse

# FANWIRE_* from the environment (Redis URL...). Each answer's topic chat.<id> is gone
# ten minutes after its last token and its last reader (topic option idle_ttl).
settings = fanwire.Settings(demo_rate=0, topics={"chat.*": fanwire.TopicOptions(idle_ttl=600.0)})
broker = fanwire.Broker(
    retention=settings.retention, redis_url=settings.redis_url, topics=settings.topic_rules()
)
COUNT = int(os.environ.get("AI_CHAT_TOKENS", "60"))
DELAY = float(os.environ.get("AI_CHAT_DELAY", "0.05"))
PAGE = (Path(__file__).parent / "index.html").read_text()
running: set[asyncio.Task[None]] = set()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with fanwire.lifespan(broker, settings):
        yield


app = FastAPI(title="ai_chat", lifespan=lifespan)
app.include_router(fanwire.router(broker, settings))  # /health, /stream, /ws, /topics ...


class Ask(BaseModel):
    prompt: str


async def generate(topic: str, prompt: str) -> None:
    """The producer: one message per token, then the end."""
    for token in tokens(prompt, COUNT):
        await asyncio.sleep(DELAY)
        await broker.apublish(topic, {"token": token})
    await broker.aend(topic, {"tokens": COUNT})


@app.post("/chat", status_code=201)
async def chat(ask: Ask) -> dict[str, str]:
    chat_id = secrets.token_hex(8)
    await broker.acreate_topic(f"chat.{chat_id}")  # in Redis mode: known on every worker
    task = asyncio.create_task(generate(f"chat.{chat_id}", ask.prompt))
    running.add(task)
    task.add_done_callback(running.discard)
    return {"id": chat_id, "stream_url": f"/chat/{chat_id}/stream"}


async def answer_topic(chat_id: str) -> str:
    """404 before the stream starts for an unknown answer (another worker's included)."""
    topic = f"chat.{chat_id}"
    await broker.aknow_topics([topic])
    if not broker.has_topic(topic):
        raise HTTPException(404, "no such answer")
    return topic


@app.get("/chat/{chat_id}/stream", response_class=EventSourceResponse)
async def stream(
    topic: Annotated[str, Depends(answer_topic)],
    replay: bool = False,
    last_event_id: str | None = None,
    header_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> AsyncIterator[Any]:
    """The answer's tokens: resumed after an id, or the whole answer so far (replay)."""
    last_n = broker.retention if replay else 0
    resume = header_id or last_event_id  # a browser's reconnect sends the header
    async for event in fanwire.sse.events(broker, topic, last_event_id=resume, last_n=last_n):
        yield event


@app.get("/", response_class=HTMLResponse)
async def page() -> str:
    return PAGE

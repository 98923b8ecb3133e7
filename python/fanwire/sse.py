"""fanwire streams in your own FastAPI routes, through FastAPI's own SSE support.

:func:`events` is an async iterator over a fanwire subscription that yields
``fastapi.sse.ServerSentEvent`` objects, so a route of yours gets fan-out, replay,
``Last-Event-ID`` resume and slow-consumer handling in a few lines::

    from fastapi.sse import EventSourceResponse

    @app.get("/answers/{answer}/stream", response_class=EventSourceResponse)
    async def stream(answer: str, last_event_id: str | None = Header(None)):
        topic = f"answer.{answer}"
        async for event in fanwire.sse.events(broker, topic, last_event_id=last_event_id):
            yield event

It works in ``@app.post(...)`` routes too. The events are those of fanwire's ``GET
/stream``: each message keeps the id, event type and data line the core encoded once at
publish time (passed as ``raw_data``, never decoded), notices (``gap``, ``topic_deleted``,
``shutdown``, ``error``) come as events without id, and the iteration ends after the
``end`` of every topic (:meth:`Broker.end`). This is not the server's own endpoint (that
is ``fanwire.server.sse``): FastAPI writes these frames, not fanwire's native writer, and
FastAPI's keepalive (a ``: ping`` comment after 15 idle seconds) replaces fanwire's
``heartbeat`` events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from .enums import Mode, Policy

if TYPE_CHECKING:
    from .broker import Broker

try:
    from fastapi.sse import ServerSentEvent
except ImportError:  # FastAPI before 0.135
    ServerSentEvent = None  # type: ignore[assignment,misc]

__all__ = ["events", "parse_frames"]

_NEED = "fanwire.sse needs FastAPI >= 0.135 (fastapi.sse); upgrade: pip install 'fastapi>=0.135'"


def _require() -> type[Any]:
    if ServerSentEvent is None:
        raise ImportError(_NEED)
    return ServerSentEvent


async def events(
    broker: Broker,
    topics: str | Iterable[str],
    *,
    last_event_id: str | None = None,
    last_n: int = 0,
    policy: Policy | str = Policy.disconnect,
    queue_size: int = 100,
) -> AsyncIterator[Any]:
    """Yield ``ServerSentEvent`` s for ``topics``, resuming after ``last_event_id``.

    ``last_n``: replay that many retained messages of each topic first (a late
    subscriber of a per-request topic asks for the whole answer with the retention).
    ``policy`` / ``queue_size``: what happens when the client reads slower than the
    producer publishes, as on ``/stream`` (defaults: the protocol's SSE defaults).
    Raises ``TopicNotFound`` (before the first event) for an unknown topic; the
    iteration ends on the ``end`` of every topic, their deletion, a slow-consumer
    disconnect or shutdown.
    """
    event_type = _require()
    names = [topics] if isinstance(topics, str) else list(topics)
    await broker.aknow_topics(names)  # Redis mode: topics made on another node just now
    sub = broker.subscribe(
        names,
        last_n=last_n,
        since=last_event_id or None,
        policy=policy,
        queue_size=queue_size,
        mode=Mode.sse,
    )
    async with sub:
        async for batch in sub:
            for fields in parse_frames(batch):
                # model_construct: the core validated every field (names, one-line JSON).
                yield event_type.model_construct(**fields)


def parse_frames(batch: bytes) -> list[dict[str, str]]:
    """Split fanwire's SSE bytes into the fields of each frame (``id``, ``event``,
    ``raw_data``). Its data lines are compact JSON, never a raw newline, so a blank line
    always ends a frame."""
    out: list[dict[str, str]] = []
    for frame in batch.decode().split("\n\n"):
        if not frame:
            continue
        fields: dict[str, str] = {}
        for line in frame.split("\n"):
            name, _, value = line.partition(": ")
            fields["raw_data" if name == "data" else name] = value
        out.append(fields)
    return out

"""REST: topics, publishing over HTTP, health and stats (PROTOCOL.md, "Topics over HTTP").

Bodies are read and parsed here (orjson) rather than by FastAPI, so that every malformed
request gets the protocol's ``400 {"error", "message"}`` instead of FastAPI's 422, also
when the router is mounted in an app without fanwire's exception handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.requests import ClientDisconnect

from ..broker import Broker
from ..errors import FanwireError, InvalidMessage, PayloadTooLarge, TopicNotFound
from ..jsoncheck import check_integers
from ..names import check_topic
from .runtime import Runtime, http_error


class ErrorBody(BaseModel):
    error: str
    message: str


class CreateTopic(BaseModel):
    name: str


class TopicCreated(BaseModel):
    name: str
    created: bool


class TopicRow(BaseModel):
    name: str
    subscribers: int | None  # on every node; None: auth on, not allowed to subscribe
    messages: int


class TopicList(BaseModel):
    topics: list[TopicRow]


class Member(BaseModel):
    client_id: str
    user: str | None
    info: dict[str, Any] | None
    joined_at: float


class PresenceBody(BaseModel):
    topic: str
    members: list[Member]
    count: int


class TopicDetail(BaseModel):
    """``GET /topics/{name}``: the counts and the effective options (README, "Topic
    options")."""

    name: str
    subscribers: int | None  # on every node; None: auth on, not allowed to subscribe
    messages: int
    options: dict[str, Any]


class PublishBody(BaseModel):
    data: Any
    event: str | None = None


class PublishResult(BaseModel):
    message_id: str
    subscribers: int
    duplicate: bool | None = None  # with an Idempotency-Key: whether it was a repeat


class Health(BaseModel):
    status: str
    uptime_seconds: float
    topic_count: int
    active_subscriber_count: int


class TopicStats(BaseModel):
    message_count: int
    subscriber_count: int
    dropped_count: int


class Stats(BaseModel):
    """Per-topic counters plus server-wide totals (more keys may follow)."""

    model_config = ConfigDict(extra="allow")
    topics: dict[str, TopicStats]
    topic_count: int
    subscriber_count: int
    published_count: int
    delivered_count: int
    dropped_count: int
    conflated_count: int
    connections: dict[str, int]
    uptime_seconds: float


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody} for status in statuses}


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def read_json(request: Request, limit: int) -> Any:
    """The request body parsed as JSON: 413 past ``limit`` bytes, 400 when malformed."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is {declared} bytes, limit {limit}")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise PayloadTooLarge(f"body exceeds {limit} bytes")
    except ClientDisconnect:  # the client's doing, not a server error: no traceback
        raise InvalidMessage("the client left before sending the whole body") from None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidMessage("body is not valid JSON") from None
    check_integers(body)
    return value


def _publish_doc() -> dict[str, Any]:
    """The publish body: one message, or a batch ``{"messages": [...]}``."""
    one = PublishBody.model_json_schema()
    batch = {
        "title": "PublishBatch",
        "type": "object",
        "properties": {"messages": {"type": "array", "items": one}},
        "required": ["messages"],
    }
    body = {"anyOf": [one, batch]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body}}}}


def _batch_items(body: dict[str, Any]) -> list[tuple[Any, str | None]]:
    """The (data, event) pairs of a batch body; InvalidMessage for any bad one."""
    if "data" in body:
        raise InvalidMessage("a body has either data or messages, not both")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise InvalidMessage("messages must be an array")
    items = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "data" not in message:
            raise InvalidMessage(f"messages[{index}] must be an object with data")
        event = message.get("event")
        if event is not None and not isinstance(event, str):
            raise InvalidMessage(f"messages[{index}].event must be a string")
        items.append((message["data"], event))
    return items


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidMessage("body must be a JSON object")
    return value


def health_body(runtime: Runtime) -> tuple[int, dict[str, Any]]:
    """(status code, body) of ``GET /health``: 503 ``shutting_down`` while draining."""
    stats = runtime.broker.stats()
    draining = runtime.broker.shutting_down
    return (503 if draining else 200), {
        "status": "shutting_down" if draining else "healthy",
        "uptime_seconds": round(runtime.uptime, 3),
        "topic_count": stats["topic_count"],
        "active_subscriber_count": stats["subscriber_count"],
    }


def stats_body(runtime: Runtime) -> dict[str, Any]:
    """``GET /stats``: the broker's counters, open connections and uptime."""
    stats = runtime.broker.stats()
    stats["connections"] = dict(runtime.connections.open)
    stats["uptime_seconds"] = round(runtime.uptime, 3)
    console = runtime.broker.console_stats()
    console.pop("queue_fills")  # /metrics' histogram only
    stats.update(console)
    return stats


def _allowed(claims: Any, topic: str) -> bool:
    try:
        claims.check_subscribe(topic)
    except FanwireError:
        return False
    return True


def topic_body(runtime: Runtime, name: str, visible: bool = True) -> dict[str, Any]:
    """``GET /topics/{name}``; TopicNotFound when there is no such topic. ``subscribers``
    counts every node (None when auth hides the topic's occupancy from the caller)."""
    broker = runtime.broker
    info = broker.topic(check_topic(name))
    if info is None:
        raise TopicNotFound(f"no topic {name!r}")
    options = broker.topic_options(name).public()
    settings = runtime.settings
    for field in ("sse_policy", "sse_queue_size", "ws_policy", "ws_queue_size"):
        if options[field] is None:  # the transport's setting
            options[field] = getattr(settings, field)
    return {
        "name": name,
        "subscribers": broker.occupancy(name) if visible else None,
        "messages": info.messages,
        "options": options,
    }


async def publish_idempotent(
    broker: Broker, name: str, data: Any, event: str | None, key: str
) -> dict[str, Any]:
    """The 202 body of a publish with an ``Idempotency-Key`` (``duplicate``: a repeat
    within the topic's dedupe window, answered with the first publish's id)."""
    published = await broker.apublish_idempotent(name, data, event, idempotency_key=key)
    return {
        "message_id": published.message_id,
        "subscribers": published.subscribers,
        "duplicate": published.duplicate,
    }


def publish_body_limit(broker: Broker) -> int:
    """The largest publish body read: a batch may be much larger than one message."""
    return max(4 * broker.max_payload + 64 * 1024, 4 << 20)


async def publish_response(runtime: Runtime, name: str, request: Request) -> Response:
    """``POST /topics/{name}/messages``: the 202 (or the error) of one publish or a batch.
    Also served by ``FanwireApp`` without FastAPI's routing (see ``app.py``)."""
    broker = runtime.broker
    auth = runtime.auth
    try:
        check_topic(name)
        auth.claims(auth.token_from(request.headers, request.query_params)).check_publish(name)
        body = _object(await read_json(request, publish_body_limit(broker)))
        key = request.headers.get("idempotency-key")
        if "messages" in body:
            if key is not None:
                raise InvalidMessage("Idempotency-Key applies to a single publish")
            batch = await broker.apublish_batch(name, _batch_items(body))
            return _accepted({"message_ids": batch.message_ids, "subscribers": batch.subscribers})
        if "data" not in body:
            raise InvalidMessage("data is required")
        event = body.get("event")
        if event is not None and not isinstance(event, str):
            raise InvalidMessage("event must be a string")
        if key is not None:
            return _accepted(await publish_idempotent(broker, name, body["data"], event, key))
        published = await broker.apublish(name, body["data"], event)
    except FanwireError as exc:
        return http_error(exc)
    return _accepted({"message_id": published.message_id, "subscribers": published.subscribers})


def _accepted(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status_code=202, media_type="application/json")


def topics_router(runtime: Runtime) -> APIRouter:
    """The REST routes of one broker."""
    api = APIRouter(tags=["topics"])
    broker = runtime.broker
    auth = runtime.auth
    body_limit = 4 * broker.max_payload + 64 * 1024

    def claims(request: Request) -> Any:
        return auth.claims(auth.token_from(request.headers, request.query_params))

    @api.post(
        "/topics",
        status_code=201,
        response_model=TopicCreated,
        responses=_errors(400, 401, 403, 429, 503),
        openapi_extra=_body_doc(CreateTopic),
    )
    async def create_topic(request: Request) -> Any:
        """Create a topic (idempotent: an existing one answers ``created: false``)."""
        try:
            claims(request).check_admin()
            body = _object(await read_json(request, 64 * 1024))
            name = body.get("name")
            if not isinstance(name, str):
                raise InvalidMessage("name is required and must be a string")
            created = await broker.acreate_topic(check_topic(name))
        except FanwireError as exc:
            return http_error(exc)
        return {"name": name, "created": created}

    @api.delete(
        "/topics/{name}",
        status_code=204,
        response_class=Response,
        responses=_errors(400, 401, 403, 404),
    )
    async def delete_topic(name: str, request: Request) -> Response:
        """Delete a topic; each of its subscribers gets ``topic_deleted``."""
        try:
            claims(request).check_admin()
            if not await broker.adelete_topic(check_topic(name)):
                raise TopicNotFound(f"no topic {name!r}")
        except FanwireError as exc:
            return http_error(exc)
        return Response(status_code=204)

    def may_see(request: Request) -> Callable[[str], bool]:
        """Auth on: occupancy and presence only of the topics the caller may subscribe to
        (no token or a bad one: none)."""
        if not auth.enabled:
            return lambda topic: True
        try:
            allowed = claims(request)
        except FanwireError:
            return lambda topic: False
        return lambda topic: _allowed(allowed, topic)

    @api.get("/topics", response_model=TopicList)
    async def list_topics(request: Request) -> Any:
        """Every topic with its subscriber (on every node) and message counts."""
        visible = may_see(request)
        rows = [
            {
                "name": t.name,
                "subscribers": broker.occupancy(t.name) if visible(t.name) else None,
                "messages": t.messages,
            }
            for t in broker.topics()
        ]
        return {"topics": rows}

    @api.get(
        "/topics/{name}/presence",
        response_model=PresenceBody,
        responses=_errors(400, 401, 403, 404),
    )
    async def topic_presence(name: str, request: Request) -> Any:
        """The topic's presence members on every node."""
        try:
            check_topic(name)
            claims(request).check_subscribe(name)
            await broker.aknow_topics([name])
            if not broker.has_topic(name):
                raise TopicNotFound(f"no topic {name!r}")
        except FanwireError as exc:
            return http_error(exc)
        members = broker.presence(name)
        return {"topic": name, "members": members, "count": len(members)}

    @api.get("/topics/{name}", response_model=TopicDetail, responses=_errors(400, 404, 503))
    async def get_topic(name: str, request: Request) -> Any:
        """One topic: its subscriber (on every node) and message counts and its effective
        options."""
        try:
            # Redis mode: a topic made on another node a moment ago, or one this node has
            # not loaded yet (503, never a 404 that would be wrong).
            await broker.aknow_topics([check_topic(name)])
            return topic_body(runtime, name, may_see(request)(name))
        except FanwireError as exc:
            return http_error(exc)

    @api.post(
        "/topics/{name}/messages",
        status_code=202,
        response_model=PublishResult,
        response_model_exclude_none=True,
        responses=_errors(400, 401, 403, 404, 413, 503),
        openapi_extra=_publish_doc(),
    )
    async def publish(name: str, request: Request) -> Response:
        """Publish ``data`` (any JSON) with an optional ``event`` type; or a batch,
        ``{"messages": [{"data": ..., "event": ...}, ...]}``, in order, all or none."""
        return await publish_response(runtime, name, request)

    @api.get("/health", response_model=Health, responses={503: {"model": Health}})
    async def health() -> Any:
        """Liveness: 200 ``healthy``, or 503 ``shutting_down`` while draining."""
        status, body = health_body(runtime)
        return body if status == 200 else JSONResponse(body, status_code=status)

    @api.get("/stats", response_model=Stats)
    async def stats() -> Any:
        """Per-topic message, subscriber and drop counts, and server-wide totals."""
        return stats_body(runtime)

    @api.post(
        "/topics/{name}/end",
        status_code=202,
        responses=_errors(400, 401, 403, 404, 413, 503),
    )
    async def end_topic(name: str, request: Request) -> Any:
        """End the topic's stream (``broker.end``): optional body ``{"data": <json>}``;
        SSE readers get ``event: end`` and their stream closes."""
        try:
            check_topic(name)
            claims(request).check_publish(name)
            headers = request.headers
            empty = headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers
            body = {} if empty else _object(await read_json(request, body_limit))
            message_id = await broker.aend(name, body.get("data"))
        except FanwireError as exc:
            return http_error(exc)
        return {"message_id": message_id}

    return api

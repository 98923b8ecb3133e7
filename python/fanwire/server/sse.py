"""Server-Sent Events: ``GET /stream`` (PROTOCOL.md, "Server-Sent Events").

Everything that can fail is checked before the response starts, so errors are plain HTTP.
The stream itself is a raw ASGI response: one task pumps batches (one chunk per wake-up),
one watches for the client leaving, and ``Subscription.must_close`` stops the wait on a
socket that no longer drains (slow consumer or shutdown).
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .. import _core
from ..enums import Mode, Policy
from ..errors import FanwireError, InvalidMessage, LimitReached, ShuttingDown
from ..names import check_topic
from ..subscription import Subscription
from ..topics import check_policy
from ..wire import sse_info
from . import _uvicorn
from .runtime import Runtime, http_error

FIRST = asyncio.FIRST_COMPLETED


@dataclass(frozen=True)
class StreamParams:
    """The validated query of ``GET /stream``."""

    topics: list[str]
    last_n: int
    since: str | None
    policy: Policy
    queue_size: int


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    # Plain ASCII digits only: int() also takes "1_0", " 5", "+3" and other scripts' digits.
    if not (raw.isascii() and raw.isdigit()):
        raise InvalidMessage(f"{name} must be a whole number written with the digits 0-9")
    try:
        value = int(raw)
    except ValueError:  # more digits than int() converts
        raise InvalidMessage(f"{name} must be between {lo} and {hi}") from None
    if not lo <= value <= hi:
        raise InvalidMessage(f"{name} must be between {lo} and {hi}")
    return value


def parse_params(request: Request, runtime: Runtime) -> StreamParams:
    """Validate the query (400 on anything malformed, 429 on too many topics)."""
    settings = runtime.settings
    topics = request.query_params.getlist("topic") or [settings.demo_topic]
    topics = list(dict.fromkeys(check_topic(t) for t in topics))
    if len(topics) > settings.max_subscriptions_per_connection:
        limit = settings.max_subscriptions_per_connection
        raise LimitReached(f"at most {limit} topics per stream")
    # A stream's defaults are its first topic's options (README, "Topic options").
    options = runtime.broker.topic_options(topics[0])
    default_policy = options.sse_policy or settings.sse_policy
    default_queue = options.sse_queue_size or settings.sse_queue_size
    policy = Policy.parse(request.query_params.get("policy") or default_policy)
    queue = _int_param(request, "queue_size", default_queue, 1, 2**31)
    since = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    retention = max(runtime.broker.topic_options(t).retention or 1 for t in topics)
    for topic in topics:
        check_policy(policy, runtime.broker.topic_options(topic))
    return StreamParams(
        topics=topics,
        last_n=_int_param(request, "last_n", 0, 0, retention),
        since=since or None,
        policy=policy,
        queue_size=min(queue, default_queue),
    )


async def prepare_topics(runtime: Runtime, topics: list[str]) -> None:
    """Create the topics when so configured, and (Redis mode) learn of those created on
    other nodes, with the async client: nothing blocks the loop on Redis."""
    broker = runtime.broker
    if broker.shutting_down:
        raise ShuttingDown("server is shutting down")
    for topic in topics:
        if broker.auto_creates(topic):
            await broker.acreate_topic(topic)
    await broker.aknow_topics(topics)


def open_subscription(runtime: Runtime, params: StreamParams) -> Subscription:
    """Subscribe (after :func:`prepare_topics`); 404 on an unknown topic."""
    broker = runtime.broker
    if broker.shutting_down:
        raise ShuttingDown("server is shutting down")
    return broker.subscribe(
        params.topics,
        last_n=params.last_n,
        since=params.since,
        policy=params.policy,
        queue_size=params.queue_size,
        mode=Mode.sse,
    )


async def stream(request: Request, runtime: Runtime) -> Response:
    """Validate, authorize and subscribe, then hand the subscription to an EventStream."""
    try:
        params = parse_params(request, runtime)
        token = runtime.auth.token_from(request.headers, request.query_params)
        claims = runtime.auth.claims(token)
        for topic in params.topics:
            claims.check_subscribe(topic)
        joins = presence_params(request)
        runtime.connections.acquire("sse")
        try:
            await prepare_topics(runtime, params.topics)
            sub = open_subscription(runtime, params)
            sub.client_id = client_id = secrets.token_hex(8)
            if any(joins):
                for topic in params.topics:
                    runtime.broker.join(
                        sub,
                        topic,
                        client_id=client_id,
                        user=claims.subject,
                        info={} if joins[0] else None,
                        join_leave=joins[1],
                    )
        except BaseException:
            runtime.connections.release("sse")
            raise
    except FanwireError as exc:
        return http_error(exc)
    # A member is told its client_id, as a WebSocket is in its `connected` info (README,
    # "Presence and occupancy"); a plain stream gets no frame it did not ask for.
    greeting = sse_info("connected", client_id=client_id) if joins[0] else b""
    return EventStream(sub, runtime, greeting)


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "")
    if raw in ("", "0", "false"):
        return False
    if raw in ("1", "true"):
        return True
    raise InvalidMessage(f"{name} must be 1 or 0")


def presence_params(request: Request) -> tuple[bool, bool]:
    """``presence=1`` (join the topics' presence sets) and ``join_leave=1`` (receive
    their ``join``/``leave`` events)."""
    return _flag(request, "presence"), _flag(request, "join_leave")


async def _client_gone(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class EventStream(Response):
    """A raw ASGI ``text/event-stream`` response owning one subscription."""

    def __init__(self, sub: Subscription, runtime: Runtime, greeting: bytes = b"") -> None:
        self.sub = sub
        self.runtime = runtime
        self.greeting = greeting  # SSE frames right after `retry:`, before anything else
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self.runtime.settings
        transport = _uvicorn.transport_of(scope, receive) if settings.native_sse else None
        headers = self.raw_headers
        if transport is not None:  # the core will write the chunks, and close the socket
            headers = [*headers, (b"transfer-encoding", b"chunked"), (b"connection", b"close")]
        handed = False
        try:
            try:
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                retry = f"retry: {settings.sse_retry_ms}\n\n".encode() + self.greeting
                await send({"type": "http.response.body", "body": retry, "more_body": True})
                if transport is not None:
                    await self.sub.replayed()  # Redis mode: a resume's history, then native
                    handed = self._hand_off(transport)
                if handed:
                    await _uvicorn.forgotten(receive)
                elif await self._run(receive, send):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                else:
                    await _uvicorn.hang_up(receive)
            finally:
                if not handed:
                    self.sub.close()
        finally:
            if not handed:  # else the slot is the core's until it closes the socket
                self.runtime.connections.release("sse")

    def _hand_off(self, transport: Any) -> bool:
        """The native path: the core owns the connection from now on (True), its slot
        released once it closed the socket; False (the ASGI path) if uvicorn still
        buffers bytes."""
        settings = self.runtime.settings
        release = functools.partial(self.runtime.connections.release, "sse")
        grace = settings.close_grace
        heartbeat = settings.heartbeat_interval
        return _uvicorn.hand_off(self.sub, transport, heartbeat, grace, release)

    async def _run(self, receive: Receive, send: Send) -> bool:
        """Stream until the subscription ends (True) or the client is gone or stalled."""
        pump = asyncio.ensure_future(self._pump(send))
        gone = asyncio.ensure_future(_client_gone(receive))
        closing = self.sub.must_close.future()  # shared: never cancelled here
        tasks = (pump, gone)
        try:
            done, _ = await asyncio.wait((*tasks, closing), return_when=asyncio.FIRST_COMPLETED)
            if not done & {pump, gone}:  # the core closes us: let the last frames out
                grace = self.runtime.close_grace()  # never past the shutdown grace
                done, _ = await asyncio.wait((pump, gone), timeout=grace, return_when=FIRST)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if pump in done and gone not in done:
            pump.result()  # re-raises a real error of the pump
            return True
        return False

    async def _pump(self, send: Send) -> None:
        heartbeat = self.runtime.settings.heartbeat_interval
        while True:
            try:
                batch = await self.sub.next_batch(timeout=heartbeat)
            except StopAsyncIteration:
                return
            body = _core.heartbeat_notice(_core.Encoding.sse) if batch is None else batch
            await send({"type": "http.response.body", "body": body, "more_body": True})

"""The FastAPI surfaces: :func:`router` (mount in any app), :func:`lifespan`, :func:`create_app`.

Embedding in an existing app::

    broker = fanwire.Broker()
    settings = Settings(demo_rate=0)

    @asynccontextmanager
    async def app_lifespan(app):
        async with lifespan(broker, settings):
            yield

    app = FastAPI(lifespan=app_lifespan)
    app.include_router(fanwire.router(broker, settings))

Where PROTOCOL.md is silent, the server does this (settings in ``settings.py``):

- HTTP errors are ``{"error": code, "message": ...}``; a malformed parameter or body uses
  the code ``INVALID_MESSAGE`` (400), a bad topic name ``INVALID_TOPIC`` (400).
- ``max_connections`` (SSE + WebSocket) reached: 503 ``LIMIT_REACHED`` with
  ``Retry-After`` (a WebSocket handshake is refused with the same HTTP answer); more
  topics on one stream or socket than ``max_subscriptions_per_connection``: 429
  ``LIMIT_REACHED`` (WebSocket: an ``error``, the socket stays open); over
  ``max_topics``: 429. ``ws_publish_rate`` (off by default) answers ``RATE_LIMITED``.
- A client's ``queue_size`` is capped at the server's default for its transport (it may
  only ask for a smaller one); ``last_n`` above the retention is a 400 / an error.
- ``Last-Event-ID`` wins over the ``last_event_id`` query parameter (a browser sends the
  header after a reconnect, with the original URL).
- A client being closed (slow consumer, shutdown) has ``close_grace`` seconds to read its
  last frames (SSE ``event: error`` / WebSocket ``SLOW_CONSUMER``, or the shutdown
  notice); a socket that stays full is then dropped without them.
- ``GET /health``, ``/stats``, ``/metrics``, ``/topics`` and the dashboard need no token
  when auth is on; publishing needs a ``publish`` claim, topic creation and deletion
  ``admin: true``.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Query, Request, Response, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.middleware import Middleware
from starlette.types import Receive, Scope, Send

from .._version import __version__
from ..broker import Broker
from ..settings import Settings
from . import rest, sse, ws
from .dashboard import dashboard_router
from .demo import run_demo
from .metrics import metrics_router
from .rest import topics_router
from .runtime import Runtime, runtime_for

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "the event stream"}
}


def router(broker: Broker, settings: Settings | None = None) -> APIRouter:
    """Every endpoint of PROTOCOL.md for ``broker``: ``/stream``, ``/ws``, REST, metrics."""
    runtime = runtime_for(broker, settings)
    api = APIRouter()

    @api.get("/stream", response_class=Response, responses=_STREAM_DOC, tags=["stream"])
    async def stream(
        request: Request,
        topic: Annotated[list[str] | None, Query(description="repeatable; default events")] = None,
        last_n: Annotated[str | None, Query(description="replay N messages per topic")] = None,
        last_event_id: Annotated[str | None, Query(description="resume after this id")] = None,
        policy: Annotated[str | None, Query(description="drop_oldest or disconnect")] = None,
        queue_size: Annotated[str | None, Query(description="a smaller queue")] = None,
        access_token: Annotated[str | None, Query(description="JWT when auth is on")] = None,
        presence: Annotated[str | None, Query(description="1: join the presence sets")] = None,
        join_leave: Annotated[str | None, Query(description="1: join/leave events")] = None,
        last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> Response:
        """Server-Sent Events of one or several topics (PROTOCOL.md)."""
        return await sse.stream(request, runtime)

    @api.websocket("/ws")
    async def websocket(websocket: WebSocket) -> None:
        await ws.endpoint(websocket, runtime)

    api.include_router(topics_router(runtime))
    api.include_router(metrics_router(runtime))
    return api


@asynccontextmanager
async def lifespan(
    broker: Broker, settings: Settings | None = None, *, handle_signals: bool = True
) -> AsyncIterator[Runtime]:
    """Run ``broker`` for an app: demo producer, shutdown notices on SIGTERM/SIGINT, drain.

    With ``handle_signals`` the first SIGTERM/SIGINT tells every client the server is
    going away (``broker.shutdown()``) before the server closes connections, then the
    server's own handler runs as before.
    """
    runtime = runtime_for(broker, settings)
    await broker.astart()
    demo = asyncio.create_task(
        run_demo(broker, runtime.settings.demo_topic, runtime.settings.demo_rate)
    )
    restore = _hook_signals(runtime) if handle_signals else _nothing
    # Everything alive now (modules, the app, FastAPI's and pydantic's tables: ~67,000
    # objects) lives as long as the process: out of the cyclic GC's sight, a full
    # collection no longer walks it (measured: 117 ms -> under 1 ms with 1,000 idle
    # subscriptions, a pause every client would see in its latency).
    gc.freeze()
    try:
        yield runtime
    finally:
        restore()
        await runtime.drain()
        demo.cancel()
        await asyncio.gather(demo, return_exceptions=True)
        await broker.aclose()


def _nothing() -> None:
    return None


def _hook_signals(runtime: Runtime) -> Callable[[], None]:
    """Chain a handler that starts the shutdown before the server's own (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return _nothing
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}
    pending: set[asyncio.Task[None]] = set()
    signalled: list[int] = []

    def pass_on(sig: int, frame: FrameType | None) -> None:
        prev = previous.get(sig)
        if callable(prev):
            prev(sig, frame)
        elif prev == signal.SIG_DFL:  # nobody else handles it: behave as before
            signal.signal(sig, prev)
            signal.raise_signal(sig)

    async def drain_then_pass_on(sig: int, frame: FrameType | None) -> None:
        await runtime.drain()
        pass_on(sig, frame)

    def begin(sig: int, frame: FrameType | None) -> None:
        runtime.begin_shutdown()
        task = loop.create_task(drain_then_pass_on(sig, frame))
        pending.add(task)
        task.add_done_callback(pending.discard)

    def handler(sig: int, frame: FrameType | None) -> None:
        # The server's own handler runs once the clients were told and their streams
        # ended (the shutdown grace at most): `python -m uvicorn` closes open WebSockets
        # with 1012 as soon as it is signalled, before their `info shutdown` went out.
        # A second signal is passed on at once (uvicorn: force exit).
        if signalled or runtime.shutdown_deadline is not None:
            pass_on(sig, frame)
        else:
            signalled.append(sig)
            loop.call_soon_threadsafe(begin, sig, frame)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, prev in previous.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, prev)

    return restore


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": "INVALID_MESSAGE", "message": str(exc)}, status_code=400)


class FanwireApp(FastAPI):
    """The fanwire server's app: a WebSocket to ``/ws`` and an HTTP publish go straight
    to their handlers.

    A connection holds every layer it passed through for as long as it lives: at 1,000
    idle WebSocket clients, FastAPI's routing, dependency and exit-stack frames and
    Starlette's exception wrappers were about 12 KB of each connection's 48 KB
    (tracemalloc), and none of them does anything for ``/ws`` (CORS and HTTP error
    handlers do not apply to a WebSocket). Once someone adds a middleware of their own to
    the app, every request goes through the stack again, so theirs sees ``/ws`` too.
    """

    def __init__(self, runtime: Runtime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._runtime = runtime
        self._own_middleware: list[Middleware] | None = None

    def seal(self) -> None:
        """The app as ``create_app`` built it: from now on middleware is the user's."""
        self._own_middleware = list(self.user_middleware)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan" or scope.get("root_path"):
            await super().__call__(scope, receive, send)
        elif kind == "websocket" and scope["path"] == "/ws" and self._untouched():
            scope["app"] = self
            await ws.endpoint(WebSocket(scope, receive, send), self._runtime)
        elif (name := _published_topic(scope)) is not None and not self.user_middleware:
            # Publishing one message over HTTP: FastAPI's routing and response model took
            # about half of each request's time; the same handler answers it here. Not
            # with CORS on (a browser's publish needs its headers).
            scope["app"] = self
            response = await rest.publish_response(self._runtime, name, Request(scope, receive))
            await response(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    def _untouched(self) -> bool:
        """No middleware but create_app's own (its CORS never applies to a WebSocket)."""
        return self.user_middleware == self._own_middleware


def _published_topic(scope: Scope) -> str | None:
    """The topic of a ``POST /topics/{name}/messages`` (FastAPI's ``{name}``: no ``/``)."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    if not (path.startswith("/topics/") and path.endswith("/messages")):
        return None
    name = path[len("/topics/") : -len("/messages")]
    return name if name and "/" not in name else None


def create_app(settings: Settings | None = None) -> FastAPI:
    """The fanwire server: PROTOCOL.md's endpoints, the dashboard at ``/``, a demo feed."""
    settings = settings or Settings()
    broker = Broker(
        retention=settings.retention,
        max_payload=settings.max_payload,
        max_topics=settings.max_topics,
        auto_create=settings.auto_create_topics,
        redis_url=settings.redis_url,
        wake_interval=settings.wake_interval,
        presence_ttl=settings.presence_ttl,
        topics=settings.topic_rules(),
        dedupe_max_keys=settings.dedupe_max_keys,
        writer_threads=settings.writer_threads,
    )

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(broker, settings):
            yield

    runtime = runtime_for(broker, settings)
    app = FanwireApp(runtime, title="fanwire", version=__version__, lifespan=app_lifespan)
    app.state.broker = broker
    app.state.fanwire = runtime
    app.include_router(router(broker, settings))
    app.include_router(dashboard_router())
    app.add_exception_handler(RequestValidationError, _validation_error)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.seal()
    return app

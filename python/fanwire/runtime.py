"""What the HTTP surfaces of one broker share: settings, limits, auth, uptime, draining."""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass, field

from fastapi.responses import JSONResponse

from .auth import Authenticator
from .broker import Broker
from .errors import FanwireError
from .limits import Connections
from .settings import Settings

_RUNTIMES: weakref.WeakKeyDictionary[Broker, Runtime] = weakref.WeakKeyDictionary()


@dataclass
class Runtime:
    """The state the routes of one broker share (one per broker, see :func:`runtime_for`)."""

    broker: Broker
    settings: Settings
    connections: Connections
    auth: Authenticator
    started: float = field(default_factory=time.monotonic)

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started

    def begin_shutdown(self) -> None:
        """Tell every client the server is going away (idempotent)."""
        if not self.broker.shutting_down:
            self.broker.shutdown()

    async def drain(self, grace: float | None = None) -> bool:
        """Shut the broker down and wait (at most ``grace`` s) for streams to end.

        True when every SSE stream and WebSocket ended in time.
        """
        self.begin_shutdown()
        grace = self.settings.shutdown_grace if grace is None else grace
        deadline = time.monotonic() + grace
        while self.connections.total and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.connections.total == 0


def runtime_for(broker: Broker, settings: Settings | None = None) -> Runtime:
    """The runtime of ``broker``, created on first use (later ``settings`` are ignored)."""
    runtime = _RUNTIMES.get(broker)
    if runtime is None:
        settings = settings or Settings()
        runtime = Runtime(
            broker=broker,
            settings=settings,
            connections=Connections(settings.max_connections),
            auth=Authenticator(settings),
        )
        _RUNTIMES[broker] = runtime
    return runtime


def http_error(exc: FanwireError) -> JSONResponse:
    """``{"error": code, "message": ...}`` with the error's HTTP status."""
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if exc.status == 503:
        headers = {"Retry-After": "1"}
    body = {"error": exc.code, "message": exc.message}
    return JSONResponse(body, status_code=exc.status, headers=headers)

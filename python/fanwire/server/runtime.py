"""What the HTTP surfaces of one broker share: settings, limits, auth, uptime, draining."""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass, field

from fastapi.responses import JSONResponse

from ..broker import Broker
from ..errors import FanwireError
from ..settings import Settings
from .auth import Authenticator
from .limits import Connections

_RUNTIMES: weakref.WeakKeyDictionary[Broker, Runtime] = weakref.WeakKeyDictionary()


@dataclass
class Runtime:
    """The state the routes of one broker share (one per broker, see :func:`runtime_for`)."""

    broker: Broker
    settings: Settings
    connections: Connections
    auth: Authenticator
    started: float = field(default_factory=time.monotonic)
    #: ``time.monotonic()`` when the shutdown grace ends (None until the shutdown begins).
    shutdown_deadline: float | None = field(default=None, init=False)
    _stopping: set[asyncio.Future[None]] = field(default_factory=set, init=False, repr=False)

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started

    def begin_shutdown(self) -> None:
        """Tell every client the server is going away (idempotent; on the loop's thread)."""
        if self.shutdown_deadline is None:
            self.shutdown_deadline = time.monotonic() + self.settings.shutdown_grace
        if not self.broker.shutting_down:
            # The core closes handed-off SSE streams itself, within the same grace: a bit
            # before its end, so that drain() sees every one of them closed.
            self.broker.limit_native_grace(0.9 * (self.shutdown_deadline - time.monotonic()))
            self.broker.shutdown()
        for future in list(self._stopping):
            if not future.done():
                future.set_result(None)

    def when_stopping(self) -> asyncio.Future[None]:
        """A future resolved when the shutdown begins: a WebSocket with no subscription
        has nothing the core would close, so it waits on this to say goodbye itself."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.shutdown_deadline is not None:
            future.set_result(None)
        else:
            self._stopping.add(future)
            future.add_done_callback(self._stopping.discard)
        return future

    def close_grace(self) -> float:
        """Seconds a client being closed now may take to read its last frames:
        ``close_grace``, but never past the end of the shutdown grace (a stalled client
        must not hold the exit)."""
        grace = self.settings.close_grace
        if self.shutdown_deadline is not None:
            grace = min(grace, max(0.0, self.shutdown_deadline - time.monotonic()))
        return grace

    async def drain(self, grace: float | None = None) -> bool:
        """Shut the broker down and wait (at most ``grace`` s, by default until the end
        of the shutdown grace) for streams to end.

        True when every SSE stream and WebSocket ended in time.
        """
        self.begin_shutdown()
        assert self.shutdown_deadline is not None
        deadline = self.shutdown_deadline if grace is None else time.monotonic() + grace
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

"""Real servers for tests: fanwire (or any ASGI app) under uvicorn, hypercorn or granian,
and redis-server.

Each runs as a subprocess on a free 127.0.0.1 port, is ready when its probe answers,
and logs to a file (see :class:`fanwire.testing.processes.ManagedProcess`). The way
fanwire is served can be any row of the matrix (:class:`fanwire.testing.matrix.Serving`).
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from .matrix import APP_FACTORY, Serving
from .processes import ManagedProcess, ServerStartError, python_command
from .tls import Certificate, certificate

if TYPE_CHECKING:
    from .sse_client import SSEClient
    from .ws_client import WSClient


class FanwireServer(ManagedProcess):
    """fanwire's own server (``python -m fanwire``) or an ASGI app run by uvicorn.

    With ``app=None`` the command is ``python -m fanwire --host 127.0.0.1 --port P``;
    with ``app="package.module:attr"`` it is ``python -m uvicorn package.module:attr
    [--factory] [--app-dir D] --host 127.0.0.1 --port P``. ``args`` go after those.
    With ``tls`` uvicorn serves HTTPS/WSS with the self-signed certificate of
    :mod:`fanwire.testing.tls` (``--ssl-keyfile/--ssl-certfile``; with ``app=None`` the
    app is fanwire's own factory, since ``python -m fanwire`` has no TLS options);
    :attr:`url` and :attr:`ws_url` are then ``https://``/``wss://`` and :attr:`verify`
    is the context to verify them with. Ready means ``GET /health`` answers 200.

    With ``serving`` (a :class:`Serving` row) the app (default: fanwire's factory) runs
    the way the row says: its server, implementations, native settings (added to
    ``env``, which wins) and TLS; ``app_dir`` then goes on ``PYTHONPATH``.
    """

    kind = "fanwire"

    def __init__(
        self,
        *,
        app: str | None = None,
        factory: bool = False,
        app_dir: str | os.PathLike[str] | None = None,
        health_path: str = "/health",
        name: str | None = None,
        port: int | None = None,
        env: Mapping[str, str | None] | None = None,
        args: Sequence[str] = (),
        cwd: str | os.PathLike[str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        tls: bool = False,
        serving: Serving | None = None,
    ) -> None:
        """Describe the server; call :meth:`start` to run it."""
        if (tls or serving is not None) and app is None:
            app, factory = APP_FACTORY, True
        environment: dict[str, str | None] = dict(serving.env() if serving else {})
        environment.update(env or {})
        if serving is not None and app_dir is not None:
            path = [str(app_dir), *filter(None, [os.environ.get("PYTHONPATH")])]
            environment.setdefault("PYTHONPATH", os.pathsep.join(path))
        super().__init__(
            name=name or (serving.name if serving else None) or app or "fanwire",
            port=port,
            env=environment,
            args=args,
            cwd=cwd,
            log_dir=log_dir,
            start_timeout=start_timeout,
            stop_timeout=stop_timeout,
        )
        self.app = app
        self.factory = factory
        self.app_dir = app_dir
        self.health_path = health_path
        self.serving = serving
        tls = tls or (serving is not None and serving.tls)
        self.certificate: Certificate | None = certificate() if tls else None

    @property
    def url(self) -> str:
        """Base HTTP URL, e.g. ``http://127.0.0.1:PORT`` (no trailing slash)."""
        scheme = "https" if self.certificate else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint, ``ws://127.0.0.1:PORT/ws`` (``wss://`` under TLS)."""
        scheme = "wss" if self.certificate else "ws"
        return f"{scheme}://{self.host}:{self.port}/ws"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """httpx's ``verify=`` for this server: a context trusting its certificate."""
        return self.certificate.client_context() if self.certificate else True

    def _tls_args(self) -> list[str]:
        if self.certificate is None:
            return []
        cert = self.certificate
        return ["--ssl-keyfile", str(cert.keyfile), "--ssl-certfile", str(cert.certfile)]

    def ws_client(self, **options: Any) -> WSClient:
        """A :class:`WSClient` of :attr:`ws_url`, negotiating deflate if the row says so."""
        from .ws_client import WSClient

        if self.serving is not None and self.serving.ws_compression:
            options.setdefault("compression", self.serving.ws_compression)
        return WSClient(self.ws_url, **options)

    def sse_client(self, **options: Any) -> SSEClient:
        """An :class:`SSEClient` of :attr:`url` (``/stream``)."""
        from .sse_client import SSEClient

        return SSEClient(self.url, **options)

    def command(self) -> list[str]:
        """``python -m fanwire ...``, ``python -m uvicorn APP ...`` or the row's server."""
        where = ["--host", self.host, "--port", str(self.port)]
        if self.serving is not None:
            assert self.app is not None
            line = self.serving.command(
                self.app, self.factory, self.host, self.port, self.certificate
            )
            return [*line, *self.args]
        if self.app is None:
            return python_command("-m", "fanwire", *where, *self.args)
        extra: list[str] = []
        if self.factory:
            extra.append("--factory")
        if self.app_dir is not None:
            extra += ["--app-dir", str(self.app_dir)]
        extra += self._tls_args()
        return python_command("-m", "uvicorn", self.app, *extra, *where, *self.args)

    def probe(self) -> bool:
        """True when ``GET /health`` answers 200."""
        try:
            response = httpx.get(
                self.url + self.health_path, timeout=1.0, trust_env=False, verify=self.verify
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200


def redis_server_binary() -> str:
    """Path of ``redis-server`` (env ``FANWIRE_TEST_REDIS_SERVER`` overrides)."""
    found = os.environ.get("FANWIRE_TEST_REDIS_SERVER") or shutil.which("redis-server")
    if not found:
        raise ServerStartError(
            "redis-server not found on PATH (Debian: apt-get install -y redis-server)"
        )
    return found


class RedisServer(ManagedProcess):
    """``redis-server`` on a free loopback port, no persistence (``--save ""``).

    :meth:`stop` and :meth:`restart` keep the port, so clients can reconnect to it.
    Ready means it answers ``PING``.
    """

    kind = "redis"

    def __init__(
        self,
        *,
        name: str | None = None,
        port: int | None = None,
        args: Sequence[str] = (),
        log_dir: str | os.PathLike[str] | None = None,
        start_timeout: float = 15.0,
        stop_timeout: float = 10.0,
    ) -> None:
        """Describe the server; call :meth:`start` to run it."""
        super().__init__(
            name=name or "redis",
            port=port,
            args=args,
            log_dir=log_dir,
            start_timeout=start_timeout,
            stop_timeout=stop_timeout,
        )
        self.data_dir: Path = self.log_path.with_suffix(".data")
        self.data_dir.mkdir(exist_ok=True)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        """``redis-server --port P --bind 127.0.0.1 --save "" --appendonly no ...``."""
        return [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            *self.args,
        ]  # fmt: skip

    def probe(self) -> bool:
        """True when the server answers ``PING`` with ``+PONG``."""
        return self.ping()

    def ping(self, timeout: float = 1.0) -> bool:
        """Send one RESP ``PING``; True if ``+PONG`` comes back."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

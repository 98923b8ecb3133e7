"""``python -m fanwire [--host H] [--port P] [--workers N] [--redis URL]``: the demo server.

Settings come from ``FANWIRE_*`` environment variables (see ``settings.py``); the flags
override host and port. On SIGTERM or SIGINT the server stops accepting, tells every
client it is shutting down (SSE ``event: shutdown``, WebSocket ``info shutdown`` and close
1001), waits at most ``shutdown_grace`` seconds for the streams to end, and exits 0.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from types import FrameType

import uvicorn
from pydantic import ValidationError
from pydantic_settings import SettingsError

from .server.app import create_app
from .server.runtime import Runtime
from .settings import Settings


class FanwireServer(uvicorn.Server):
    """uvicorn's server, draining fanwire's streams before it closes connections.

    uvicorn closes open WebSockets with 1012 and then waits for streaming responses to end
    before the app's lifespan shutdown runs; so the broker must be shut down first.
    """

    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self.runtime = runtime

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # stop accepting; open connections stay
        await self.runtime.drain()
        await super().shutdown(sockets)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fanwire", description=__doc__)
    parser.add_argument("--host", help="bind address (FANWIRE_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="bind port (FANWIRE_PORT, default 8000)")
    parser.add_argument("--workers", type=int, default=1, help="processes (needs Redis)")
    parser.add_argument("--redis", metavar="URL", help="Redis URL (FANWIRE_REDIS_URL): scale-out")
    parser.add_argument("--log-level", default="info", help="uvicorn log level")
    parser.add_argument(
        "--no-access-log", action="store_true", help="no per-request log line (benchmarks)"
    )
    return parser.parse_args(argv)


def _exit_quietly(sig: int, frame: FrameType | None) -> None:
    """Runs when uvicorn re-raises the signal it handled: the shutdown is already done."""


def _settings() -> Settings | None:
    """The settings from the environment, or None after printing what is wrong with them
    (one line per bad value, naming its FANWIRE_* variable and field)."""
    try:
        return Settings()
    except SettingsError as exc:  # e.g. FANWIRE_TOPICS is not JSON
        print(f"fanwire: bad settings, not starting: {exc}", file=sys.stderr)
        return None
    except ValidationError as exc:
        print("fanwire: bad settings, not starting:", file=sys.stderr)
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            print(
                f"  FANWIRE_{where.split('.')[0].upper()} ({where}): {err['msg']}", file=sys.stderr
            )
        return None


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; 2 on a configuration error."""
    args = parse_args(argv)
    settings = _settings()
    if settings is None:
        return 2
    if args.host:
        settings.host = args.host
    if args.port is not None:
        settings.port = args.port
    if args.redis:
        settings.redis_url = args.redis
    if args.workers > 1 and settings.redis_url:
        from .server.workers import run_workers

        run_workers(settings, args.workers, args.log_level)
        return 0
    if args.workers > 1:
        print(
            "fanwire: --workers above 1 needs a shared log: the in-memory broker lives in one"
            " process, so clients of different workers would not see each other's messages."
            " Give a Redis URL (--redis URL or FANWIRE_REDIS_URL) to share one log between"
            " workers, or use --workers 1.",
            file=sys.stderr,
        )
        return 2
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        access_log=not args.no_access_log,
        # uvicorn annotates an int but only passes it to asyncio.wait_for, which takes a
        # float: a grace of 2.5 s stays 2.5 s.
        timeout_graceful_shutdown=max(1.0, settings.shutdown_grace),  # type: ignore[arg-type]
        ws_ping_interval=settings.ws_ping_interval or None,
        ws_ping_timeout=settings.ws_ping_timeout or None,
        ws_per_message_deflate=settings.ws_per_message_deflate,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_quietly)
    FanwireServer(config, app.state.fanwire).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

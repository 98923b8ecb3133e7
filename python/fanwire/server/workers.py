"""``python -m fanwire --workers N --redis URL``: N uvicorn worker processes on one port.

Each worker is a whole fanwire node (its own broker, core and Redis reader); Redis makes
them one server: a message published through any worker reaches the clients of all, and
a client resumes on whichever worker its reconnection lands. Settings reach the workers
through the ``FANWIRE_*`` environment (the parent exports the Redis URL it was given).
On SIGTERM each worker's lifespan tells its clients ``shutdown`` before uvicorn closes.
"""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI

from ..settings import Settings


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn factory), configured from the environment."""
    from .app import create_app

    return create_app(Settings())


def run_workers(settings: Settings, workers: int, log_level: str) -> None:
    """Run ``workers`` processes sharing ``settings.redis_url`` until SIGTERM/SIGINT."""
    if not settings.redis_url:
        raise ValueError("several workers need a Redis URL (--redis or FANWIRE_REDIS_URL)")
    os.environ["FANWIRE_REDIS_URL"] = settings.redis_url
    uvicorn.run(
        "fanwire.server.workers:worker_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=log_level,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace)),
        ws_ping_interval=settings.ws_ping_interval or None,
        ws_ping_timeout=settings.ws_ping_timeout or None,
        ws_per_message_deflate=settings.ws_per_message_deflate,
    )

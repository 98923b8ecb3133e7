"""What counts as "Redis is unavailable", and turning it into the protocol's error."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis

from . import BackendUnavailable

#: Errors that mean "Redis is not reachable right now".
DOWN = (redis.ConnectionError, redis.TimeoutError, OSError)


@contextlib.contextmanager
def unavailable(what: str) -> Iterator[None]:
    """Turn a Redis connection failure into :class:`BackendUnavailable` (HTTP 503)."""
    try:
        yield
    except DOWN as exc:
        raise BackendUnavailable(f"{what}: Redis is unavailable, try again") from exc

"""Server-wide limits the core does not own: open connections and publish rates."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from ..errors import RateLimited, TooManyConnections

Transport = Literal["sse", "ws"]


class Connections:
    """Counts open SSE streams and WebSockets against ``max_connections``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {"sse": 0, "ws": 0}

    @property
    def total(self) -> int:
        return self.open["sse"] + self.open["ws"]

    def acquire(self, transport: Transport) -> None:
        """Take a slot, or raise :class:`TooManyConnections`."""
        if self.total >= self.limit:
            raise TooManyConnections(f"server holds {self.limit} connections already")
        self.open[transport] += 1

    def release(self, transport: Transport) -> None:
        self.open[transport] = max(0, self.open[transport] - 1)

    @contextmanager
    def slot(self, transport: Transport) -> Iterator[None]:
        """Hold a slot for the duration of the block."""
        self.acquire(transport)
        try:
            yield
        finally:
            self.release(transport)


class TokenBucket:
    """``rate`` events per second with a burst of ``max(1, rate)``; rate 0 means no limit."""

    __slots__ = (
        "capacity",
        "rate",
        "stamp",
        "tokens",
    )

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> None:
        """Spend one token, or raise :class:`RateLimited`."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            raise RateLimited(f"at most {self.rate:g} publishes per second")
        self.tokens -= 1.0

"""What the SSE and WebSocket test clients share: ``async with`` and stalling."""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType
from typing import Self


class StallableClient:
    """A client opened by ``connect()``, closed by ``close()``, whose reader waits on
    ``self._allowed`` so a test can make it stop reading (a deliberately slow client)."""

    _allowed: asyncio.Event
    _changed: asyncio.Event

    def _waiting(self, what: str) -> str:
        raise NotImplementedError

    async def _await_change(self, deadline: float, limit: float | None, what: str) -> None:
        """Wait until something arrives, or raise TimeoutError once ``deadline`` passed."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out after {limit}s {self._waiting(what)}")
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), left)

    async def connect(self) -> Self:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        """Connect."""
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close."""
        await self.close()

    def stall(self) -> None:
        """Stop reading: data backs up in the socket, then in the server."""
        self._allowed.clear()

    def resume(self) -> None:
        """Read again after :meth:`stall` (or a ``stalled=True`` start)."""
        self._allowed.set()

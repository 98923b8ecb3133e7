"""What the SSE and WebSocket test clients share: ``async with`` and stalling."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self


class StallableClient:
    """A client opened by ``connect()``, closed by ``close()``, whose reader waits on
    ``self._allowed`` so a test can make it stop reading (a deliberately slow client)."""

    _allowed: asyncio.Event

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

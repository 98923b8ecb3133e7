"""What the SSE and WebSocket test clients share: ``async with``, stalling, bounded waits.

:class:`~fanwire.testing.sse_client.SSEClient` and
:class:`~fanwire.testing.ws_client.WSClient` are the only clients in fanwire.testing: the
load and stress helpers run on them too, with ``on_message`` callbacks and ``keep=False``
so a thousand of them hold no history.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self


async def connected_socket(host: str, port: int, receive_buffer: int) -> socket.socket:
    """A non-blocking TCP socket to ``host:port`` whose receive buffer was set *before*
    connecting: TCP agrees on the window scale in the handshake, and a buffer shrunk
    afterwards makes the receiver advertise a zero window until the sender's probes
    (measured with the SSE client: resumed after a stall, it read one 32 KB frame a
    second instead of its whole backlog at once)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class StallableClient:
    """A client opened by ``connect()``, closed by ``close()``, whose reader waits on
    ``self._allowed`` so a test can make it stop reading (a deliberately slow client).

    ``keep`` says whether what arrives is stored (``frames`` / ``messages``); the
    ``on_message`` callback of the subclasses sees everything either way. ``count`` is
    how many frames or messages arrived in all.
    """

    #: Raised by :meth:`_wait` when the connection ends before the condition holds.
    _ended_error: type[AssertionError] = AssertionError

    def __init__(self, *, stalled: bool, keep: bool) -> None:
        """Start stalled (not reading) if ``stalled``."""
        self.keep = keep
        self.count = 0
        self._reader: asyncio.Task[None] | None = None
        self._allowed = asyncio.Event()
        if not stalled:
            self._allowed.set()
        self._changed = asyncio.Event()

    @property
    def _ended(self) -> bool:
        raise NotImplementedError

    def _ended_because(self) -> str:
        raise NotImplementedError

    def _waiting(self, what: str) -> str:
        raise NotImplementedError

    async def _wait(
        self,
        condition: Callable[[Self], bool],
        *,
        timeout: float,
        what: str,
        allow_end: bool,
    ) -> None:
        """Wait until ``condition(self)`` holds; bounded, errors say what had arrived.

        Raises ``_ended_error`` if the connection ends first (unless ``allow_end``),
        :class:`RuntimeError` if the client is stalled (it would wait forever) and
        :class:`TimeoutError` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while not condition(self):
            if self._ended:
                if allow_end:
                    return
                raise self._ended_error(f"{self._ended_because()} {self._waiting(what)}")
            if self._reader is not None and not self._allowed.is_set():
                raise RuntimeError(f"client is stalled {self._waiting(what)}; resume() it")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out after {timeout}s {self._waiting(what)}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def until_ended(self) -> None:
        """Wait, with no time limit, until the connection ends (a load client's life)."""
        while not self._ended:
            self._changed.clear()
            await self._changed.wait()

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

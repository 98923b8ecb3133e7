"""The native SSE write path: the C++ core writes frames straight to the client's socket.

Profiling the ASGI path under load (1,000 SSE clients) showed most of the server's time in
Python per client and wake-up: Starlette's and uvicorn's ``send`` wrappers and one
``transport.write`` each. So once the response head and ``retry:`` are out, a stream
served by uvicorn is handed to the core's writer thread, which writes every batch as
one HTTP/1.1 chunk from C++ with no GIL, and tells Python only when the stream ends.

The path is taken only when it is safe: an HTTP/1.1 request on uvicorn (the transport is
reached through uvicorn's ``receive``, which Starlette passes along unwrapped), a
response sent with ``Transfer-Encoding: chunked``, and nothing left in the transport's
buffer. Any other server, or a middleware wrapping ``receive``, keeps the ASGI path.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from starlette.types import Receive, Scope

from .subscription import Subscription

ENDS_CLEANLY = ("no_topics", "shutdown")


def transport_of(scope: Scope, receive: Receive, *, native: bool = True) -> Any | None:
    """uvicorn's transport for this request, when the native path can use it (not TLS).

    With ``native=False``, uvicorn's transport even under TLS (to abort the connection).
    """
    if scope.get("type") != "http" or scope.get("http_version") != "1.1":
        return None
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None or transport.is_closing():
        return None
    if not native:
        return transport
    # Under TLS the socket carries encrypted records: the core cannot encrypt, so bytes it
    # wrote there would be plaintext in the middle of the TLS stream (the client sees
    # "wrong version number"). The transport, not scope["scheme"], tells: behind a
    # TLS-terminating proxy the scheme may say https while the socket is plain.
    tls = (transport.get_extra_info(key) for key in ("sslcontext", "ssl_object"))
    if any(info is not None for info in tls):
        return None
    sock = transport.get_extra_info("socket")
    return transport if sock is not None and sock.fileno() >= 0 else None


def raw_transport(websocket: Any) -> Any | None:
    """uvicorn's transport under an accepted-to-be WebSocket (None under other servers).

    Writes to it must be whole frames, from the loop's thread, under the connection's
    send lock: then they cannot interleave with the WebSocket library's own frames.
    """
    receive = getattr(websocket, "_receive", None)
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "get_write_buffer_size"):
        return None
    return transport


def attach(sub: Subscription, transport: Any, heartbeat: float) -> Any | None:
    """Give ``sub`` to the writer thread, or None if the transport still buffers bytes."""
    if not sub.native_ready or transport.is_closing() or transport.get_write_buffer_size():
        return None
    fd = os.dup(transport.get_extra_info("socket").fileno())
    try:
        return sub.attach_socket(fd, heartbeat)
    except BaseException:
        os.close(fd)
        raise


async def client_gone(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def run(sub: Subscription, sink: Any, transport: Any, receive: Receive,
              grace: float) -> bool:
    """Wait for the stream to end; True when the server should finish the response.

    A stream ended by the core (shutdown, no topic left, slow consumer) gets ``grace``
    seconds for its last frames to reach the client; a stream that cannot end cleanly
    (slow consumer, or bytes still stuck) is aborted, which also frees the connection.
    """
    gone = asyncio.ensure_future(client_gone(receive))
    closing = asyncio.ensure_future(sub.must_close.wait())
    try:
        await asyncio.wait((gone, closing), return_when=asyncio.FIRST_COMPLETED)
        if not gone.done():
            await _wait_flushed(sink, gone, grace)
    finally:
        for task in (gone, closing):
            task.cancel()
        await asyncio.gather(gone, closing, return_exceptions=True)
    end, flushed = sink.end, sink.flushed
    sink.close()
    if gone.done() and not gone.cancelled():
        return False
    if end in ENDS_CLEANLY and flushed:
        return True
    transport.abort()
    return False


async def _wait_flushed(sink: Any, gone: asyncio.Future[None], grace: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while not sink.flushed and not gone.done() and loop.time() < deadline:
        await asyncio.sleep(0.02)

"""The only module that knows uvicorn's transport and protocol objects.

The native SSE path: the C++ core owns the client's connection after the response head.

Profiling the ASGI path under load (1,000 SSE clients) showed most of the server's time in
Python per client and wake-up: Starlette's and uvicorn's ``send`` wrappers and one
``transport.write`` each; and an idle stream still cost about 30 KB (transport, protocol,
parser, request task) and, with a duplicate for the core, two descriptors. So once the
response head and ``retry:`` are out, a stream served by uvicorn is handed to the core's
writer thread for good (:func:`hand_off`): it writes every batch as one HTTP/1.1 chunk
from C++ with no GIL, reads the socket to see the client leave, sends heartbeats from a
timer, finishes or resets the response, and tells Python once, when it closed the socket.

The path is taken only when it is safe: an HTTP/1.1 request on uvicorn (the transport is
reached through uvicorn's ``receive``, which Starlette passes along unwrapped), a
response sent with ``Transfer-Encoding: chunked``, and nothing left in the transport's
buffer. Any other server, or a middleware wrapping ``receive``, keeps the ASGI path.

The WebSocket side reaches uvicorn's transport the same way (ready-made frames through
:class:`FrameWriter`, and resetting a stalled client): those reads of uvicorn internals
live here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from starlette.types import Receive, Scope

from ..subscription import Subscription


def http_transport(receive: Receive) -> Any | None:
    """uvicorn's open transport under this HTTP request (None under other servers), TLS
    or not: enough to abort the connection."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None or transport.is_closing():
        return None
    return transport


def transport_of(scope: Scope, receive: Receive) -> Any | None:
    """uvicorn's transport for this request, when the native path can use it (not TLS)."""
    if scope.get("type") != "http" or scope.get("http_version") != "1.1":
        return None
    transport = http_transport(receive)
    if transport is None:
        return None
    # Under TLS the socket carries encrypted records: the core cannot encrypt, so bytes it
    # wrote there would be plaintext in the middle of the TLS stream (the client sees
    # "wrong version number"). The transport, not scope["scheme"], tells: behind a
    # TLS-terminating proxy the scheme may say https while the socket is plain.
    tls = (transport.get_extra_info(key) for key in ("sslcontext", "ssl_object"))
    if any(info is not None for info in tls):
        return None
    sock = transport.get_extra_info("socket")
    return transport if sock is not None and sock.fileno() >= 0 else None


async def hang_up(receive: Receive) -> None:
    """Abort a response that cannot be finished (its client stalled past ``close_grace``)
    under uvicorn: a close would wait for a reader that never comes. Then wait until
    uvicorn has seen the connection go (a loop turn or two), or it would log the response
    as unfinished. Elsewhere (or when the client is already gone) the server deals with it.
    """
    transport = http_transport(receive)
    if transport is None:
        return
    transport.abort()
    cycle = getattr(receive, "__self__", None)
    for _ in range(100):
        if getattr(cycle, "disconnected", True):
            return
        await asyncio.sleep(0.01)


class FrameWriter:
    """Ready-made WebSocket frames written straight to uvicorn's transport.

    Writes must be whole frames, from the loop's thread, under the connection's send
    lock: then they cannot interleave with the WebSocket library's own frames.
    """

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def has_room(self, limit: int) -> bool:
        """Open, and holding at most ``limit`` bytes not yet sent."""
        transport = self._transport
        return not transport.is_closing() and transport.get_write_buffer_size() <= limit

    def backlogged(self, limit: int) -> bool:
        """Open, and holding more than ``limit`` bytes not yet sent."""
        transport = self._transport
        return not transport.is_closing() and transport.get_write_buffer_size() > limit

    def write(self, frames: bytes) -> None:
        self._transport.write(frames)

    def write_if_open(self, frames: bytes) -> None:
        if not self._transport.is_closing():
            self._transport.write(frames)


def frame_writer(websocket: Any) -> FrameWriter | None:
    """A writer to uvicorn's transport under an accepted-to-be WebSocket (None under other
    servers)."""
    receive = getattr(websocket, "_receive", None)
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "get_write_buffer_size"):
        return None
    return FrameWriter(transport)


def _ws_protocol(websocket: Any) -> Any | None:
    """uvicorn's protocol object under a WebSocket (None under other servers)."""
    protocol = getattr(getattr(websocket, "_receive", None), "__self__", None)
    transport = getattr(protocol, "transport", None)
    return protocol if hasattr(transport, "get_write_buffer_size") else None


def ws_gone(websocket: Any) -> bool:
    """Whether uvicorn saw the connection under ``websocket`` end (True elsewhere: there is
    nothing this side can wait for)."""
    protocol = _ws_protocol(websocket)
    if protocol is None:
        return True
    disconnected = getattr(protocol, "disconnected", None)  # websockets-sansio, wsproto
    if disconnected is not None:
        return bool(disconnected)
    lost = getattr(protocol, "connection_lost_waiter", None)  # websockets (legacy)
    if lost is not None:
        return bool(lost.done())
    transport = protocol.transport
    return bool(transport.is_closing() and not transport.get_write_buffer_size())


async def hang_up_ws(websocket: Any, deadline: float) -> None:
    """Give the connection under ``websocket`` until loop time ``deadline`` to end (the
    close handshake, or the client leaving), then reset it.

    A client that stopped reading never takes its close frame: uvicorn would wait for
    the buffer to drain forever, keeping the socket and the megabytes queued for it (75
    stalled clients held 210 MB). The reset (``SO_LINGER`` 0, then ``abort()``) also
    drops what the kernel still queues. Under other servers their own timeouts apply.
    """
    loop = asyncio.get_running_loop()
    while not ws_gone(websocket) and loop.time() < deadline:
        await asyncio.sleep(0.02)
    protocol = _ws_protocol(websocket)
    if protocol is None or ws_gone(websocket):
        return
    transport = protocol.transport
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def hand_off(
    sub: Subscription,
    transport: Any,
    heartbeat: float,
    close_grace: float,
    on_end: Callable[[], None],
) -> bool:
    """Give the connection under ``transport`` to the core for good (False, and nothing
    changed, if the transport still buffers bytes): from now on the writer thread writes
    the stream, sees the client leave, finishes or resets the response and closes the
    socket; then ``sub`` closes itself and calls ``on_end``.

    uvicorn lets go of it: closing the transport closes only uvicorn's descriptor (asyncio
    and uvloop close it, they never ``shutdown()`` the socket), so the kernel socket stays
    open on the core's duplicate, the only descriptor left. uvicorn's ``connection_lost``
    then marks the request disconnected (so it logs nothing when the app returns: wait
    for it with :func:`forgotten`) and forgets the connection: its counts,
    ``--limit-concurrency`` and its shutdown no longer see it, and no transport, protocol
    or task is left in Python for an idle stream.
    """
    if not sub.native_ready or transport.is_closing() or transport.get_write_buffer_size():
        return False
    fd = os.dup(transport.get_extra_info("socket").fileno())
    try:
        sub.attach_socket(fd, heartbeat, close_grace, on_end)
    except BaseException:
        os.close(fd)
        raise
    transport.close()
    return True


async def forgotten(receive: Receive) -> None:
    """Wait until uvicorn saw the handed-off connection go (a loop turn or two)."""
    cycle = getattr(receive, "__self__", None)
    for _ in range(100):
        if getattr(cycle, "disconnected", True):
            return
        await asyncio.sleep(0.01)


def denial_done(websocket: Any) -> None:
    """uvicorn's websockets-sansio protocol does not note that a denial response completed
    the handshake, so it logs "ASGI callable returned without completing handshake." at
    ERROR for every refused client (uvicorn PR #3138); note it, as its wsproto one does."""
    protocol: Any = getattr(getattr(websocket, "_receive", None), "__self__", None)
    sent = getattr(protocol, "close_sent", False) and getattr(protocol, "initial_response", None)
    if sent and getattr(protocol, "handshake_complete", True) is False:
        protocol.handshake_complete = True


def _parser_idle(conn: Any) -> bool:
    """Whether the websockets library's frame parser holds nothing: its buffer is empty
    and its generator waits for a new frame (in ``StreamReader.at_eof``), not in the
    middle of one whose first bytes it already consumed."""
    reader = getattr(conn, "reader", None)
    if getattr(reader, "buffer", b"x") or getattr(conn, "events", True):
        return False
    if getattr(conn, "current_size", None) is not None:  # a fragmented message under way
        return False
    gen = getattr(conn, "parser", None)
    while getattr(gen, "gi_yieldfrom", None) is not None:
        gen = gen.gi_yieldfrom  # type: ignore[union-attr]
    code = getattr(gen, "gi_code", None)
    return getattr(code, "co_name", "") == "at_eof"


def _queued_messages(queue: Any) -> list[bytes] | None:
    """Take the client messages uvicorn queued for the app and did not deliver yet
    (frames pipelined right behind the handshake), or None (nothing taken) if anything
    else waits there (a disconnect)."""
    events = list(getattr(queue, "_queue", ()))
    if any(event.get("type") != "websocket.receive" for event in events):
        return None
    taken: list[bytes] = []
    for _ in events:
        event = queue.get_nowait()
        data = event.get("text")
        taken.append(data.encode() if data is not None else event.get("bytes") or b"")
    return taken


def ws_socket(websocket: Any) -> tuple[Any, int, list[bytes]] | None:
    """uvicorn's protocol under an accepted WebSocket and a duplicate of its socket, when
    the core can own the connection from now on; else None, and nothing changed.

    Only uvicorn's websockets-sansio implementation: its parser state can be checked
    (:func:`_parser_idle`) so that no byte the client sent after its handshake is lost.
    The legacy websockets and wsproto implementations keep today's path (their buffered
    bytes cannot be reached safely). Not under TLS (the core cannot encrypt), not with an
    extension negotiated (permessage-deflate: the core sends frames as they are), and not
    while bytes wait unsent or in the middle of the parser. Complete messages uvicorn
    queued for the app are carried over (returned, oldest first): the caller answers them
    before anything the core reads.
    """
    protocol = _ws_protocol(websocket)
    if protocol is None or type(protocol).__name__ != "WebSocketsSansIOProtocol":
        return None
    conn = getattr(protocol, "conn", None)
    transport = protocol.transport
    if conn is None or getattr(conn, "extensions", True) or transport.is_closing():
        return None
    if transport.get_write_buffer_size() or any(
        transport.get_extra_info(key) is not None for key in ("sslcontext", "ssl_object")
    ):
        return None
    queue = getattr(protocol, "queue", None)
    if queue is None or getattr(protocol, "frames", True) or not _parser_idle(conn):
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or sock.fileno() < 0:
        return None
    queued = _queued_messages(queue)
    if queued is None:
        return None
    return protocol, os.dup(sock.fileno()), queued


def ws_limits(protocol: Any) -> tuple[int, float, float]:
    """uvicorn's own WebSocket settings (``--ws-max-size``, ``--ws-ping-interval``,
    ``--ws-ping-timeout``; ``python -m fanwire`` passes fanwire's): the core keeps them."""
    config = protocol.config
    return (
        int(config.ws_max_size),
        float(config.ws_ping_interval or 0.0),
        float(config.ws_ping_timeout or 0.0),
    )


def let_go_ws(protocol: Any) -> None:
    """uvicorn lets go of a WebSocket the core owns now (as :func:`hand_off` for SSE):
    no keepalive timer, and closing the transport closes only its descriptor; its
    ``connection_lost`` marks the connection gone and forgets it (no log when the app
    returns, no count, no shutdown close)."""
    protocol.stop_keepalive()
    protocol.transport.close()

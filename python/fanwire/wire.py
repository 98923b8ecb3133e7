"""What Python sends that the core does not encode: WebSocket replies, and a
connection's encoding (:class:`Notices`) for the notices Python queues itself.

Every notice of a stream (drops, gap, ``topic_deleted``, ``shutdown``, slow consumer,
heartbeats) is encoded by the core (``cpp/src/notices.cpp``), for every writer: the
drops and ends in place by ``_core.Stream.take()``, the rest through the ``_core.*_notice``
functions below. What is left here are the WebSocket replies to a client's requests
(``ack``, ``pong``, ``error``, ``connected``), encoded with orjson, never by hand.
"""

from typing import Any

import orjson

from . import _core
from .enums import Mode


def ws_text(obj: dict[str, Any]) -> str:
    """A WebSocket text message."""
    return orjson.dumps(obj).decode()


def ws_info(message: str, **fields: Any) -> str:
    """A WebSocket ``info`` message, e.g. ``ws_info("connected", client_id=...)``."""
    return ws_text({"type": "info", "message": message, **fields})


def sse_info(message: str, **fields: Any) -> bytes:
    """An SSE ``event: info`` frame, e.g. ``sse_info("connected", client_id=...)``: the
    WebSocket ``info`` without ``type`` (the frame's event says it), no ``id:`` (it must
    not move the client's Last-Event-ID) and no ``topic`` (unlike every message)."""
    return b"event: info\ndata: " + orjson.dumps({"message": message, **fields}) + b"\n\n"


def ws_error(code: str, message: str, request_id: Any = None) -> str:
    """A WebSocket ``error`` message; ``request_id`` is echoed when the request had one."""
    obj: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if request_id is not None:
        obj["request_id"] = request_id
    return ws_text(obj)


class Notices:
    """The notices Python queues for one connection, as the core encodes them for its
    encoding: ``sse`` (bytes of SSE frames), ``ws`` (WebSocket texts) or ``ws_frames``
    (bytes of WebSocket frames, written to the socket as they are)."""

    __slots__ = (
        "encoding",
        "frames",
        "mode",
    )

    def __init__(self, mode: Mode | str) -> None:
        self.mode = Mode(mode)
        self.encoding = self.mode.encoding
        self.frames = self.mode is Mode.ws_frames

    def event(self, sse: bytes, text: str) -> bytes | str:
        """A message already encoded by the core, in this transport's form."""
        if self.mode is Mode.sse:
            return sse
        return _core.ws_frame(text) if self.frames else text

    def gap(self, topic: str, first_available: str | None) -> bytes | str:
        return _core.gap_notice(self.encoding, topic, first_available)

    def heartbeat(self) -> bytes | str:
        return _core.heartbeat_notice(self.encoding)

"""Protocol notices (PROTOCOL.md) that Python formats; message frames come from the core.

The core encodes each published message once (its SSE frame and its WebSocket ``event``
text), and the drop notices in place (``_core.Stream``). What is left here are the rare
control notices: gaps, deletion, shutdown, heartbeats. They are encoded with orjson,
never by hand.
"""

import time
from typing import Any

import orjson

from . import _core
from .enums import Mode


def sse_frame(event: str, data: Any) -> bytes:
    """One SSE frame with no id (control frames must not move the client's Last-Event-ID)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def ws_text(obj: dict[str, Any]) -> str:
    """A WebSocket text message."""
    return orjson.dumps(obj).decode()


def ws_info(message: str, **fields: Any) -> str:
    """A WebSocket ``info`` message, e.g. ``ws_info("gap", topic=..., first_available=...)``."""
    return ws_text({"type": "info", "message": message, **fields})


def ws_error(code: str, message: str, request_id: Any = None) -> str:
    """A WebSocket ``error`` message; ``request_id`` is echoed when the request had one."""
    obj: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if request_id is not None:
        obj["request_id"] = request_id
    return ws_text(obj)


def sse_heartbeat() -> bytes:
    return sse_frame("heartbeat", {"ts": time.time()})


def ws_heartbeat() -> str:
    return ws_info("heartbeat", ts=time.time())


class Notices:
    """Formats the notices of one subscription for its transport: ``sse`` (bytes of SSE
    frames), ``ws`` (WebSocket texts) or ``ws_frames`` (bytes of WebSocket frames, written
    to the socket as they are)."""

    def __init__(self, mode: Mode | str) -> None:
        self.mode = Mode(mode)
        self.sse = self.mode is Mode.sse
        self.frames = self.mode is Mode.ws_frames

    def event(self, sse: bytes, text: str) -> bytes | str:
        """A message already encoded by the core, in this transport's form."""
        if self.sse:
            return sse
        return _core.ws_frame(text) if self.frames else text

    def _ws(self, text: str) -> bytes | str:
        return _core.ws_frame(text) if self.frames else text

    def gap(self, topic: str, first_available: str | None) -> bytes | str:
        if self.sse:
            return sse_frame("gap", {"topic": topic, "first_available": first_available})
        return self._ws(ws_info("gap", topic=topic, first_available=first_available))

    def topic_deleted(self, topic: str) -> bytes | str:
        if self.sse:
            return sse_frame("topic_deleted", {"topic": topic})
        return self._ws(ws_info("topic_deleted", topic=topic))

    def shutdown(self) -> bytes | str:
        if self.sse:
            return sse_frame("shutdown", {"ts": time.time()})
        return self._ws(ws_info("shutdown"))

    def heartbeat(self) -> bytes | str:
        return sse_heartbeat() if self.sse else self._ws(ws_heartbeat())

    def slow_consumer(self, topic: str) -> bytes | str:
        if self.sse:
            return sse_frame("error", {"code": "SLOW_CONSUMER", "topic": topic})
        return self._ws(ws_error("SLOW_CONSUMER", f"queue of topic {topic!r} overflowed; closing"))


#: How a producer's end (``Broker.end``) starts its SSE frame: it has no ``id:`` line, so
#: it can only be at the start of a batch or right after another frame.
END_FRAME = b"event: end\n"
_AFTER_FRAME = b"\n\n" + END_FRAME


def ended_topics(frames: bytes) -> list[str]:
    """The topics whose ``end`` is among ``frames`` (SSE bytes), in order."""
    if not (frames.startswith(END_FRAME) or _AFTER_FRAME in frames):
        return []
    out = []
    for frame in frames.split(b"\n\n"):
        if frame.startswith(END_FRAME):
            data = frame[len(END_FRAME) :].removeprefix(b"data: ")
            out.append(orjson.loads(data)["topic"])
    return out

"""SSE and WebSocket test clients speaking PROTOCOL.md (one import for both)."""

from __future__ import annotations

from .gaps import Gap
from .sse_client import CONTROL_EVENTS, SSEClient, SSEFrame, StreamEnded, UnexpectedStatus
from .ws_client import WSClient, WSClosed, WSErrorReply

__all__ = [
    "CONTROL_EVENTS",
    "Gap",
    "SSEClient",
    "SSEFrame",
    "StreamEnded",
    "UnexpectedStatus",
    "WSClient",
    "WSClosed",
    "WSErrorReply",
]

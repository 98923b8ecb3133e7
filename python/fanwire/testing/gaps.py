"""The marker a client puts in its received sequence where the server announced a gap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Gap:
    """A gap the server announced between two delivered messages.

    SSE ``event: gap`` carries ``first_available`` (on resume) or a dropped count
    (slow consumer); WebSocket ``info`` ``gap`` / ``messages_dropped`` likewise.
    """

    topic: str | None = None
    first_available: str | None = None
    dropped: int | None = None
    notice: Any = None

    @classmethod
    def from_notice(cls, notice: Any) -> Gap:
        """Build from the JSON body of an SSE gap frame or a WebSocket info message."""
        if not isinstance(notice, dict):
            return cls(notice=notice)
        dropped = notice.get("dropped")
        return cls(
            topic=notice.get("topic"),
            first_available=notice.get("first_available"),
            dropped=dropped if isinstance(dropped, int) else None,
            notice=notice,
        )

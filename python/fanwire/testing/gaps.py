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
    #: ``"resume"``: the resume id is unknown or trimmed (``first_available`` says where
    #: the retained log starts, None if nothing is retained); ``"drop"``: a slow
    #: consumer's queue overflowed (``dropped`` messages, if the server says).
    kind: str = "drop"

    @classmethod
    def from_notice(cls, notice: Any) -> Gap:
        """Build from the JSON body of an SSE gap frame or a WebSocket info message."""
        if not isinstance(notice, dict):
            return cls(notice=notice)
        dropped = notice.get("dropped")
        resume = "first_available" in notice and "dropped" not in notice
        return cls(
            topic=notice.get("topic"),
            first_available=notice.get("first_available"),
            dropped=dropped if isinstance(dropped, int) else None,
            notice=notice,
            kind="resume" if resume else "drop",
        )

    @classmethod
    def resume(cls, first_available: str | None, topic: str | None = None) -> Gap:
        """A resume gap (for hand-written expectations)."""
        return cls(topic=topic, first_available=first_available, kind="resume")

"""The names a caller picks from: :class:`Policy` and :class:`Mode`, each spelled once.

Both are ``StrEnum``: a member equals its string, so ``policy="drop_oldest"``, the
settings' ``FANWIRE_SSE_POLICY=disconnect`` and a WebSocket's ``"policy"`` field all
parse to the same member, and each maps to the core's bound enum.
"""

from __future__ import annotations

from enum import StrEnum

from . import _core
from .errors import InvalidMessage

__all__ = ["Mode", "Policy"]


class Policy(StrEnum):
    """What happens to a subscriber whose queue is full (PROTOCOL.md, slow consumers)."""

    drop_oldest = "drop_oldest"  # drop the oldest queued messages and say how many
    disconnect = "disconnect"  # close the client with SLOW_CONSUMER
    conflate = "conflate"  # skip superseded messages of a topic's conflate_key

    @classmethod
    def parse(cls, value: str) -> Policy:
        """``value`` as a Policy; :class:`~fanwire.InvalidMessage` (400) listing the
        allowed ones otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise InvalidMessage(f"policy must be {' or '.join(cls)}") from None

    @property
    def core(self) -> _core.Policy:
        return _core.Policy.__members__[self.value]


class Mode(StrEnum):
    """How a subscription's batches are encoded for its transport."""

    sse = "sse"  # bytes of SSE frames
    ws = "ws"  # a list of WebSocket texts, one per message
    ws_frames = "ws_frames"  # bytes of whole WebSocket frames, written as they are

    @property
    def encoding(self) -> _core.Encoding:
        return _core.Encoding.__members__[self.value]

"""Validation of topic and event names (PROTOCOL.md: ``^[A-Za-z0-9_.-]{1,255}$``)."""

import re

from .errors import InvalidTopic

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,255}")
#: The event types of the server's own notices: a publish may not use them (a client
#: could not tell a forged ``shutdown`` or ``gap`` from the server's).
#: ``end`` is published by :meth:`Broker.end` only (a stream's producer is done).
RESERVED_EVENTS = frozenset(
    ("heartbeat", "gap", "topic_deleted", "shutdown", "error", "conflated", "join", "leave", "end")
)


def is_valid_name(name: object) -> bool:
    """True when ``name`` is a string usable as a topic or an SSE event type."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def check_topic(name: object) -> str:
    """Return ``name`` if it is a valid topic name, else raise :class:`InvalidTopic`."""
    if not is_valid_name(name):
        raise InvalidTopic("topic names match ^[A-Za-z0-9_.-]{1,255}$")
    return name  # type: ignore[return-value]


def glob_match(pattern: str, text: str) -> bool:
    """True when ``text`` matches ``pattern``, whose ``*`` matches any run of characters.

    The literal pieces between stars are found left to right, each at its first place
    after the previous one (an earlier place never loses: a later star can absorb what
    it skipped), so a match costs a few linear scans. A regex (``.*`` per star)
    backtracks: ``*.*.*.*.x`` against a 255-character topic took 2.4 s.
    """
    pieces = pattern.split("*")
    if len(pieces) == 1:
        return pattern == text
    head, *middle, tail = pieces
    end = len(text) - len(tail)
    if end < len(head) or not text.startswith(head) or not text.endswith(tail):
        return False
    pos = len(head)
    for piece in middle:
        found = text.find(piece, pos, end)
        if found < 0:
            return False
        pos = found + len(piece)
    return True

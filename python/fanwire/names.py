"""Validation of topic and event names (PROTOCOL.md: ``^[A-Za-z0-9_.-]{1,255}$``)."""

import re

from .errors import InvalidTopic

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,255}")


def is_valid_name(name: object) -> bool:
    """True when ``name`` is a string usable as a topic or an SSE event type."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def check_topic(name: object) -> str:
    """Return ``name`` if it is a valid topic name, else raise :class:`InvalidTopic`."""
    if not is_valid_name(name):
        raise InvalidTopic("topic names match ^[A-Za-z0-9_.-]{1,255}$")
    return name  # type: ignore[return-value]

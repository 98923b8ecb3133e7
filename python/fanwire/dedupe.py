"""Idempotent publish, one process (PROTOCOL.md, "Idempotent publish").

Each topic remembers the idempotency keys of its recent publishes with the message id
they got, for the topic's ``dedupe_window`` and at most ``max_keys`` of them (the oldest
go first). In Redis mode the same bookkeeping lives in Redis, in the publish script
(:data:`fanwire.backends.scripts.PUBLISH_ONCE`), so every node sees every key.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from .errors import InvalidMessage

__all__ = ["MAX_KEY_LENGTH", "KeyWindow", "check_key"]

#: Longest idempotency key, in characters.
MAX_KEY_LENGTH = 128


def check_key(key: object) -> str:
    """``key`` if it is a usable idempotency key (1 to 128 characters), else 400."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
        raise InvalidMessage(f"an idempotency key is a string of 1 to {MAX_KEY_LENGTH} characters")
    return key


class KeyWindow:
    """The keys of recent publishes per topic: key -> (message id, expiry)."""

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self._topics: dict[str, OrderedDict[str, tuple[str, float]]] = {}

    def first(self, topic: str, key: str) -> str | None:
        """The id of the publish that used ``key`` on ``topic`` within its window."""
        keys = self._topics.get(topic)
        if keys is None:
            return None
        self._expire(keys, time.monotonic())
        found = keys.get(key)
        return None if found is None else found[0]

    def remember(self, topic: str, key: str, message_id: str, window: float) -> None:
        keys = self._topics.setdefault(topic, OrderedDict())
        keys[key] = (message_id, time.monotonic() + window)
        while len(keys) > self.max_keys:
            keys.popitem(last=False)

    def forget(self, topic: str) -> None:
        """``topic`` was deleted: a topic created anew under its name starts afresh."""
        self._topics.pop(topic, None)

    @staticmethod
    def _expire(keys: OrderedDict[str, tuple[str, float]], now: float) -> None:
        # One window per topic: keys expire in the order they were remembered.
        while keys:
            _, (_, expires) = next(iter(keys.items()))
            if expires > now:
                return
            keys.popitem(last=False)

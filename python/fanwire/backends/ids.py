"""Redis stream ids (``"<ms>-<seq>"``) as comparable pairs."""

from __future__ import annotations

StreamKey = tuple[int, int]

#: The id before every entry (``XREAD`` from it returns a stream from its start).
ZERO: StreamKey = (0, 0)
_MAX = 2**64


def parse_id(text: str | bytes | None) -> StreamKey | None:
    """``(ms, seq)`` of a stream id, or None for anything that is not one."""
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    ms, sep, seq = text.partition("-")
    if not sep or not _digits(ms) or not _digits(seq):
        return None
    key = (int(ms), int(seq))
    return key if key[0] < _MAX and key[1] < _MAX else None


def _digits(part: str) -> bool:
    return 0 < len(part) <= 20 and part.isascii() and part.isdigit()


def format_id(key: StreamKey) -> str:
    """The stream id text of ``key``."""
    return f"{key[0]}-{key[1]}"


def as_text(value: str | bytes) -> str:
    """A Redis reply (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else value

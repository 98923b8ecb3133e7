"""Client JSON taken with no value changed (PROTOCOL.md: ``data`` is any JSON value).

orjson parses an integer outside 64 bits (below -2**63 or above 2**64 - 1) as a float, so
``18446744073709551616`` would reach subscribers as ``1.8446744073709552e+19``. Such a
message is refused instead (400 / ``INVALID_MESSAGE``), as orjson refuses to encode such
an int from Python.
"""

from __future__ import annotations

import json
import re

from .errors import InvalidMessage

_LO, _HI = -(2**63), 2**64 - 1
# 2**63 has 19 digits: text with no run of 19 digits holds no integer out of range, so the
# exact (slower) check runs only on the rare message that has one.
_LONG_TEXT = re.compile(r"[0-9]{19}")
_LONG_BYTES = re.compile(rb"[0-9]{19}")


def check_integers(raw: str | bytes | bytearray) -> None:
    """Raise :class:`InvalidMessage` if the JSON text ``raw`` (which orjson parsed) has an
    integer outside 64 bits."""
    found = _LONG_TEXT.search(raw) if isinstance(raw, str) else _LONG_BYTES.search(raw)
    if found is None:
        return
    try:
        json.loads(raw, parse_int=_checked_int)
    except RecursionError:  # orjson takes 1,024 levels, the json module fewer
        raise InvalidMessage("message is nested too deeply") from None


def _checked_int(text: str) -> int:
    if len(text) > 20:  # longer than -2**63 or 2**64 - 1 (and int() may refuse it)
        raise InvalidMessage("integer out of 64-bit range")
    value = int(text)
    if not _LO <= value <= _HI:
        raise InvalidMessage("integer out of 64-bit range")
    return value

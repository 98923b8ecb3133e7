"""A deterministic fake model: the same prompt always gives the same tokens (no download)."""

from __future__ import annotations

import random
import zlib

WORDS = (
    "fanwire streams every token of this answer to each reader once , in order ; a reader "
    "who reloads the page resumes where it stopped , and a second tab sees the same words ."
).split()


def tokens(prompt: str, count: int) -> list[str]:
    """``count`` tokens for ``prompt`` (words with their leading space)."""
    rng = random.Random(zlib.crc32(prompt.encode()))
    return [("" if i == 0 else " ") + rng.choice(WORDS) for i in range(count)]

"""One line per step on stderr, with the time since the run started."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, message: str) -> None:
        minutes, seconds = divmod(int(self.elapsed()), 60)
        print(f"[{minutes:02d}:{seconds:02d}] {message}", file=sys.stderr, flush=True)

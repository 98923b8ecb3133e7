"""Wakes subscriptions on the event loop when the core says they are ready.

Wake-ups are rate-limited. A *round* is one drain plus the subscriber task steps it
wakes (they run right after it, in the loop's FIFO order). The next round may start only
``max(interval, duration of the last round)`` after the last one ended, so the loop never
spends more than half its time waking subscribers and the publishers (HTTP requests,
WebSocket publishes) keep their share. Under load this is what makes batches: each
subscriber then takes everything published meanwhile in one wake-up and one write,
instead of one wake-up per subscriber per publish. An idle server drains at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Waker:
    def __init__(self, fd: int, drain: Callable[[], None], interval: float) -> None:
        self._fd = fd
        self._drain = drain
        self.interval = interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        self._scheduled = False
        self._next = 0.0
        self.rounds = 0  # rounds started so far (once one more started, the last ended)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.detach()
        self._loop = loop
        self._watch(True)

    def detach(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._watch(False)
        self._loop = None

    def request(self) -> None:
        """A drain is needed (a publish from the loop's thread wrote no fd)."""
        self._schedule(run_now=False)

    def _signalled(self) -> None:
        self._schedule(run_now=True)

    def _schedule(self, run_now: bool) -> None:
        loop = self._loop
        if loop is None or self._scheduled:
            return
        delay = self._next - time.monotonic()
        if delay <= 0 and run_now:
            self._run()
            return
        self._scheduled = True
        if delay > 0:
            self._watch(False)  # the fd stays readable meanwhile: stop polling it
            loop.call_later(delay, self._run)
        else:
            loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        loop = self._loop
        if loop is None:
            return
        self._watch(True)
        # time.monotonic(), not loop.time(): uvloop caches its clock for a whole loop
        # iteration, which made a long round look instant and disabled the limit.
        started = time.monotonic()
        self.rounds += 1
        self._drain()
        self._round_done(started)  # a signal may come before the woken tasks have run
        # Scheduled after the wake-ups, so it runs once the woken tasks have had their step.
        loop.call_soon(self._round_done, started)

    def _round_done(self, started: float) -> None:
        now = time.monotonic()
        if self.interval <= 0:  # no rate limit at all
            self._next = now
        elif self._loop is not None:
            self._next = now + max(self.interval, now - started)

    def _watch(self, on: bool) -> None:
        assert self._loop is not None
        if on and not self._reading:
            self._loop.add_reader(self._fd, self._signalled)
        elif not on and self._reading:
            self._loop.remove_reader(self._fd)
        self._reading = on

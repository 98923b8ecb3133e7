"""Drives one run of the C++ load generator (bench/loadgen): one command per line on its
stdin, one JSON answer per line on its stdout (see bench/loadgen/main.cpp)."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from pathlib import Path
from typing import Any

Report = dict[str, Any]


class LoadgenError(RuntimeError):
    pass


class Loadgen:
    """N subscribers of one topic on one server, and the publisher that feeds them."""

    def __init__(
        self,
        binary: Path,
        port: int,
        transport: str,
        clients: int,
        log_path: Path,
        topic: str = "bench",
        max_seconds: float = 900,
        ws_path: str = "/ws",
        deflate: bool = False,
        sse_path: str | None = None,
        subscribe_extra: str = "",
        keys: int = 0,
    ) -> None:
        argv = [str(binary), "--port", str(port), "--transport", transport]
        argv += ["--clients", str(clients), "--topic", topic, "--max-seconds", str(max_seconds)]
        argv += ["--connect-timeout", str(30 + clients / 100)]
        argv += ["--ws-path", ws_path, "--deflate", "1" if deflate else "0"]
        if sse_path:
            argv += ["--sse-path", sse_path]
        if subscribe_extra:  # more fields of the WebSocket subscribe, e.g. ',"presence":true'
            argv += ["--subscribe-extra", subscribe_extra]
        if keys:  # payloads carry "k": seq % keys, a conflation key
            argv += ["--keys", str(keys)]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
            )
        self._buffer = b""

    def __enter__(self) -> Loadgen:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ready(self) -> Report:
        """Waits until every client is connected (or failed to)."""
        return self._answer("ready", timeout=60 + 0.02 * self._clients())

    def sync(self, timeout: float = 10) -> Report:
        """Publishes markers until every client has seen one: all subscriptions are live."""
        return self._ask(f"sync {timeout}", "sync", timeout + 15)

    def step(
        self, rate: float, seconds: float, payload: int, drain: float, give_up_ms: float = 0
    ) -> Report:
        """Publishes at `rate` for `seconds`; gives up once a message is give_up_ms late."""
        command = f"step {rate} {seconds} {payload} {drain} {give_up_ms}"
        return self._ask(command, "step", seconds + drain + 30)

    def listen(
        self, rate: float, seconds: float, payload: int, drain: float, give_up_ms: float = 0
    ) -> Report:
        """Starts a step that another load generator's `step` publishes (both must have run
        the same steps before, so the seqs agree); answers at once. `listened` reads the
        step's report."""
        command = f"listen {rate} {seconds} {payload} {drain} {give_up_ms}"
        return self._ask(command, "listening", 30)

    def listened(self, seconds: float, drain: float) -> Report:
        return self._answer("step", seconds + drain + 30)

    def flood(
        self, seconds: float, payload: int, kind: str, conns: int, window: int, batch: int = 1
    ) -> Report:
        """Publishes as fast as acknowledged (kind http, batch or ws) for `seconds`."""
        command = f"flood {seconds} {payload} {kind} {conns} {window} {batch}"
        return self._ask(command, "flood", seconds + 40)

    def stall(self, clients: int) -> Report:
        return self._ask(f"stall {clients}", "stalled", 30)

    def unstall(self, seconds: float = 2.0) -> Report:
        """Reads the stalled clients for up to `seconds`: did the server close them?"""
        return self._ask(f"unstall {seconds}", "unstalled", seconds + 30)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=5)

    def _clients(self) -> int:
        args = self.proc.args
        assert isinstance(args, list)
        return int(args[args.index("--clients") + 1])

    def _ask(self, command: str, kind: str, timeout: float) -> Report:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(command.encode() + b"\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise LoadgenError(f"loadgen is gone ({exc})") from exc
        return self._answer(kind, timeout)

    def _answer(self, kind: str, timeout: float) -> Report:
        deadline = time.monotonic() + timeout
        while True:
            line = self._readline(deadline)
            report: Report = json.loads(line)
            if report.get("type") == "error":
                raise LoadgenError(report.get("message", line))
            if report.get("type") == kind:
                return report

    def _readline(self, deadline: float) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    raise LoadgenError("loadgen did not answer in time")
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise LoadgenError(f"loadgen exited (code {self.proc.wait()})")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

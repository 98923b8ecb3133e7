"""A server subprocess on a loopback port: start, wait until ready, stop, restart.

Every process started here is remembered (see :func:`started_processes`) so the pytest
plugin can check at session end that each one is gone and its port is free.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

from .ports import HOST, free_port, port_is_free

#: Substrings that mean "someone else took the port" in a server's log.
_ADDRESS_IN_USE = ("address already in use", "errno 98")

_STARTED: list[ManagedProcess] = []
_default_log_dir: Path | None = None


class ServerStartError(RuntimeError):
    """A server did not become ready: it exited, or never answered its probe in time."""


def started_processes() -> list[ManagedProcess]:
    """Every :class:`ManagedProcess` started in this interpreter, in start order."""
    return list(_STARTED)


def set_default_log_dir(path: Path) -> None:
    """Write the logs of processes started without an explicit ``log_dir`` to ``path``."""
    global _default_log_dir
    _default_log_dir = path


def _log_dir() -> Path:
    global _default_log_dir
    if _default_log_dir is None:
        _default_log_dir = Path(tempfile.mkdtemp(prefix="fanwire-test-logs-"))
    return _default_log_dir


def _pids_in_group(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid`` (Linux /proc)."""
    proc = Path("/proc")
    if not proc.is_dir():  # pragma: no cover - non-Linux fallback
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    pids: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = stat.rsplit(")", 1)[1].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


class ManagedProcess:
    """A server subprocess listening on ``127.0.0.1:port``.

    Subclasses give the command line (:meth:`command`) and the readiness probe
    (:meth:`probe`). The process runs in its own session (process group), with stdout
    and stderr appended to :attr:`log_path`.
    """

    kind = "server"

    def __init__(
        self,
        *,
        name: str | None = None,
        port: int | None = None,
        env: Mapping[str, str | None] | None = None,
        args: Sequence[str] = (),
        cwd: str | os.PathLike[str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        """Describe the process; nothing starts until :meth:`start`.

        ``env`` is added to this process's environment (a ``None`` value removes a
        variable); ``args`` are appended to the command line. With ``port=None`` a free
        port is picked, and picked again if another process takes it first.
        """
        self.name = name or self.kind
        self.host = HOST
        self._port_given = port is not None
        self.port: int = port if port is not None else free_port()
        self.env: dict[str, str | None] = dict(env or {})
        self.args: list[str] = list(args)
        self.cwd = cwd
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        directory = Path(log_dir) if log_dir is not None else _log_dir()
        directory.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=f"{self.kind}-", suffix=".log", dir=directory)
        os.close(fd)
        self.log_path = Path(path)
        self._proc: subprocess.Popen[bytes] | None = None
        self._pgid: int | None = None
        self.returncode: int | None = None
        #: Problems seen while stopping (e.g. leftover child processes), for the
        #: session-end report.
        self.problems: list[str] = []
        self.start_count = 0
        #: ``time.time()`` when :meth:`stop` last stopped it (None while it runs).
        self.stopped_at: float | None = None

    # -- to override -------------------------------------------------------------------
    def command(self) -> list[str]:
        """The command line that starts the server on :attr:`port`."""
        raise NotImplementedError

    def probe(self) -> bool:
        """Return True when the server is ready to serve (one quick attempt)."""
        raise NotImplementedError

    # -- state -------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The pid of the running process, or None when not started or stopped."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the process has been started and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def log_text(self, max_chars: int | None = None) -> str:
        """The process's output so far (the last ``max_chars`` characters if given)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        if max_chars is not None and len(text) > max_chars:
            text = "[... earlier output cut ...]\n" + text[-max_chars:]
        return text

    def leftover_pids(self) -> list[int]:
        """Processes of this server's process group still alive (should be none)."""
        return _pids_in_group(self._pgid) if self._pgid is not None else []

    def __repr__(self) -> str:
        """Show name, port and pid."""
        return f"<{type(self).__name__} {self.name!r} port={self.port} pid={self.pid}>"

    # -- lifecycle ---------------------------------------------------------------------
    def _environment(self) -> dict[str, str]:
        environ = dict(os.environ)
        environ["PYTHONUNBUFFERED"] = "1"
        for key, value in self.env.items():
            if value is None:
                environ.pop(key, None)
            else:
                environ[key] = value
        return environ

    def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            header = f"----- {self.name}: start #{self.start_count + 1} on port {self.port}\n"
            log.write(header.encode())
            log.write(("$ " + " ".join(self.command()) + "\n").encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                cwd=self.cwd,
                start_new_session=True,
            )
        self._pgid = self._proc.pid
        self.returncode = None
        self.stopped_at = None
        self.start_count += 1
        if self not in _STARTED:
            _STARTED.append(self)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self.returncode = code
                self.stop()
                raise ServerStartError(
                    f"{self.name} exited with code {code} before it was ready on port "
                    f"{self.port}. Its log ({self.log_path}):\n{self.log_text(20000)}"
                )
            if self.probe():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(
                    f"{self.name} was not ready on port {self.port} after "
                    f"{self.start_timeout:.0f}s. Its log ({self.log_path}):\n"
                    f"{self.log_text(20000)}"
                )
            time.sleep(0.05)

    def start(self) -> Self:
        """Start the process and wait until :meth:`probe` succeeds.

        Raises :class:`ServerStartError` (with the log) if the process exits first or
        is not ready within ``start_timeout``; the process is stopped in both cases.
        """
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        attempts = 1 if self._port_given else 4
        for attempt in range(attempts):
            self._spawn()
            try:
                self._wait_ready()
                return self
            except ServerStartError as error:
                lost_race = any(s in str(error).lower() for s in _ADDRESS_IN_USE)
                if not lost_race or attempt == attempts - 1:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, timeout: float | None = None) -> int | None:
        """Stop gracefully: SIGTERM, wait up to ``timeout`` s, then SIGKILL the group.

        Returns the exit code (negative for a signal, as in :mod:`subprocess`), or None
        if the process was never started. Calling it again returns the same code.
        """
        proc = self._proc
        if proc is None:
            return self.returncode
        wait = self.stop_timeout if timeout is None else timeout
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                self._kill_group()
                proc.wait(10)
        self.returncode = proc.returncode
        self._proc = None
        self.stopped_at = time.time()
        # Children (e.g. uvicorn workers) should go with their parent; give them a moment.
        deadline = time.monotonic() + max(wait, 2.0)
        while self.leftover_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        leftovers = self.leftover_pids()
        if leftovers:
            self.problems.append(
                f"{self.name}: processes {leftovers} of its group outlived it; killed"
            )
            self._kill_group()
        return self.returncode

    def _kill_group(self) -> None:
        if self._pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pgid, signal.SIGKILL)

    def restart(self, stop_timeout: float | None = None) -> Self:
        """Stop (if running) and start again on the same port, env and args."""
        self.stop(stop_timeout)
        self._port_given = True  # same port on purpose: clients reconnect to it
        return self.start()

    def kill(self) -> int | None:
        """Stop at once with SIGKILL (a crash, not a shutdown); returns the exit code."""
        self._kill_group()
        return self.stop(timeout=10)

    def check_gone(self) -> list[str]:
        """Problems to report at session end: still running, leftovers, port taken."""
        problems = list(self.problems)
        if self.running:
            problems.append(f"{self!r} is still running")
        leftovers = self.leftover_pids()
        if leftovers:
            problems.append(f"{self.name}: processes {leftovers} are still alive")
        if not port_is_free(self.port):
            problems.append(f"{self.name}: port {self.port} is still in use")
        return problems

    def force_cleanup(self) -> None:
        """Kill whatever is left of this process and its group (session-end safety net)."""
        self._kill_group()
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
            self._proc = None


def python_command(*args: str) -> list[str]:
    """A command line that runs this interpreter with ``args``."""
    return [sys.executable, *args]

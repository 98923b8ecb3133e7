"""The servers under test: each one is a `ServerSpec` (a command and what it supports),
started as a `ServerProcess` on a free loopback port.

Every server speaks the part of PROTOCOL.md the benchmark uses: `GET /health`,
`POST /topics {"name": ...}`, `POST /topics/{name}/messages {"data": ...}` and
`GET /stream?topic=...` (SSE), and `/ws` with `{"type":"subscribe","topic":...}` where
`transports` has "ws".
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.paths import REPO

HOST = "127.0.0.1"  # all benchmark traffic stays on loopback


@dataclass(frozen=True)
class ServerSpec:
    name: str
    label: str
    command: tuple[str, ...]  # "{port}" is replaced by the port
    transports: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    role: str = "baseline"  # "subject" (fanwire), "baseline" or "reference"

    def argv(self, port: int) -> list[str]:
        return [part.replace("{port}", str(port)) for part in self.command]


def _baseline(name: str, label: str, transports: tuple[str, ...]) -> ServerSpec:
    module = f"bench.baselines.{name}_app"
    cmd = (sys.executable, "-m", module, "--host", HOST, "--port", "{port}")
    return ServerSpec(name, label, cmd, transports)


def all_specs(refserver: Path, fanwire_cmd: str | None = None) -> list[ServerSpec]:
    fanwire = (
        tuple(shlex.split(fanwire_cmd))
        if fanwire_cmd
        else (
            sys.executable,
            "-m",
            "fanwire",
            "--host",
            HOST,
            "--port",
            "{port}",
            "--no-access-log",
        )  # as the baselines run: access log off
    )
    return [
        ServerSpec(
            "fanwire",
            "fanwire",
            fanwire,
            ("sse", "ws"),
            env={"FANWIRE_DEMO_RATE": "0"},
            role="subject",
        ),
        _baseline("asyncio_queue", "asyncio.Queue + StreamingResponse", ("sse", "ws")),
        _baseline("sse_starlette", "sse-starlette", ("sse",)),
        _baseline("broadcaster", "broadcaster (memory)", ("sse",)),
        ServerSpec(
            "refserver",
            "C++ epoll reference",
            (str(refserver), "--host", HOST, "--port", "{port}"),
            ("sse",),
            role="reference",
        ),
    ]


def unavailable_reason(spec: ServerSpec) -> str | None:
    """Why a server cannot run here (None if it can)."""
    if spec.name != "fanwire" or spec.command[0] != sys.executable:
        return None
    probe = "import importlib.util as u, sys; sys.exit(u.find_spec('fanwire.__main__') is None)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60)
    return None if done.returncode == 0 else "fanwire is not installed (no fanwire.__main__)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One running server; a context manager that always stops it."""

    def __init__(self, spec: ServerSpec, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.spec = spec
        self.extra_env = env or {}  # a scenario's own settings, over the spec's
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ, **self.spec.env, **self.extra_env, "PYTHONUNBUFFERED": "1"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.spec.argv(self.port),
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_healthy(timeout)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited early, see {self.log_path}")
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.spec.name} did not answer /health in {timeout:.0f}s")

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            payload = None if body is None else json.dumps(body)
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                return resp.status, json.loads(raw) if raw else None
            except ValueError:
                return resp.status, raw.decode(errors="replace")
        finally:
            conn.close()

    def create_topic(self, name: str) -> None:
        status, body = self.request("POST", "/topics", {"name": name})
        if status not in (200, 201):
            raise RuntimeError(f"{self.spec.name}: POST /topics answered {status} {body}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_bytes(self) -> int:
        """Resident memory of the server process (VmRSS in /proc/PID/status)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def fd_count(self) -> int:
        """Open file descriptors of the server process (entries of /proc/PID/fd)."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

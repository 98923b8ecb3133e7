"""What every measurement needs: the mode, the tools, where logs go, the progress line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import Loadgen
from bench.modes import Mode
from bench.progress import Progress
from bench.servers import ServerProcess

TOPIC = "bench"


@dataclass
class Context:
    mode: Mode
    loadgen: Path  # binary
    logs: Path  # folder for server and loadgen logs
    progress: Progress

    def open_loadgen(
        self, server: ServerProcess, transport: str, clients: int, **options: Any
    ) -> Loadgen:
        """`options`: Loadgen's ws_path, deflate, sse_path, subscribe_extra, keys, topic."""
        log = self.logs / f"loadgen-{server.spec.name}-{transport}.log"
        options = {"topic": TOPIC, **options}
        return Loadgen(self.loadgen, server.port, transport, clients, log, **options)

    def server_log(self, name: str) -> Path:
        return self.logs / f"server-{name}.log"

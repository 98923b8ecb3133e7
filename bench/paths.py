"""Where the benchmark's sources, binaries and results live."""

from __future__ import annotations

from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
BUILD = BENCH / "build"
RESULTS = BENCH / "results"
LOADGEN_SRC = BENCH / "loadgen"
REFSERVER_SRC = BENCH / "refserver"

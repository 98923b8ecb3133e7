"""Builds the two C++ tools (load generator and reference server) with g++.

A tool is rebuilt only when one of its sources is newer than its binary.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bench.paths import BUILD, LOADGEN_SRC, REFSERVER_SRC

CXXFLAGS = ["-O2", "-std=c++20", "-Wall", "-Wextra", "-pthread"]


def _sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".cpp", ".hpp"))


def _build(name: str, folder: Path, main: str) -> Path:
    binary = BUILD / name
    sources = _sources(folder)
    if binary.exists() and all(s.stat().st_mtime <= binary.stat().st_mtime for s in sources):
        return binary
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise RuntimeError("g++ not found: the benchmark's C++ tools need a C++20 compiler")
    BUILD.mkdir(parents=True, exist_ok=True)
    cmd = [compiler, *CXXFLAGS, str(folder / main), "-o", str(binary)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"building {name} failed:\n{done.stderr}")
    return binary


def build_loadgen() -> Path:
    return _build("loadgen", LOADGEN_SRC, "main.cpp")


def build_refserver() -> Path:
    return _build("refserver", REFSERVER_SRC, "refserver.cpp")

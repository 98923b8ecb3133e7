"""Static checks run as tests: mypy --strict (config in pyproject.toml), the core's stub
against the compiled module (mypy.stubtest), and ruff."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWLIST = ROOT / "tests" / "stubtest_allowlist.txt"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(("mypy",), id="mypy"),
        pytest.param(
            ("mypy.stubtest", "fanwire._core", "--allowlist", str(ALLOWLIST)), id="stubtest"
        ),
        pytest.param(("ruff", "check", "python", "tests", "examples", "bench"), id="ruff"),
    ],
)
def test_static_check_passes(command):
    result = run(*command)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"

"""Builds the C++ unit and stress tests and runs them with ctest: plain, under
ThreadSanitizer and under AddressSanitizer (LeakSanitizer included)."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def boost_include() -> str:
    import cmeel  # the cmeel-boost wheel from the test extras carries Boost's headers

    return str(pathlib.Path(cmeel.__file__).resolve().parent.parent / "cmeel.prefix" / "include")


@pytest.mark.parametrize("sanitizer", ["", "thread", "address"], ids=["plain", "tsan", "asan"])
def test_ctest(sanitizer: str) -> None:
    build = ROOT / "build" / f"ctest-{sanitizer or 'plain'}"
    configure = [
        "cmake",
        "-S",
        str(ROOT),
        "-B",
        str(build),
        "-G",
        "Ninja",
        "-DFANWIRE_PYTHON=OFF",
        "-DFANWIRE_TESTS=ON",
        f"-DFANWIRE_SANITIZE={sanitizer}",
        f"-DFANWIRE_BOOST_INCLUDE={boost_include()}",
        f"-DPython_EXECUTABLE={sys.executable}",
        "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
    ]
    assert shutil.which("cmake") and shutil.which("ninja"), "cmake and ninja are test deps"
    for cmd in (configure, ["cmake", "--build", str(build)]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        assert "warning:" not in done.stdout + done.stderr, (done.stdout + done.stderr)[-4000:]
    done = subprocess.run(
        ["ctest", "--output-on-failure"], cwd=build, capture_output=True, text=True, timeout=900
    )
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert "WARNING: ThreadSanitizer" not in report and "ERROR: AddressSanitizer" not in report

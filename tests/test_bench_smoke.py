"""CI runs the benchmark end to end on its smallest scenario (a few seconds of load):
the tools build, every compared server starts and serves, the results are written.
No timing is asserted: the figures are only checked to exist and be consistent."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_bench_smoke_runs_end_to_end(tmp_path):
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--no-stall",
            "--out",
            str(out),
            "--servers",
            "fanwire,asyncio_queue,sse_starlette,broadcaster,refserver",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "bench: " in done.stdout and " 0 failed" in done.stdout
    results = json.loads((out / "results.json").read_text())
    designs = {(s["server"], s["transport"]) for s in results["scenarios"]}
    assert {
        ("fanwire", "sse"),
        ("fanwire", "ws"),
        ("asyncio_queue", "sse"),
        ("refserver", "sse"),
    } <= designs
    for scenario in results["scenarios"]:
        assert scenario["sustained_rate"], scenario  # every design delivered everything
        assert scenario["delivered_per_s"] == scenario["sustained_rate"] * scenario["clients"]
    assert (out / "results.md").read_text().startswith("# fanwire benchmark")
    for plot in ("delivered_vs_clients.png", "latency_vs_load.png", "memory_vs_clients.png"):
        assert (out / plot).stat().st_size > 1000

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
    idle = {(r["key"], r["clients"]): r for r in results["idle"]}
    for key in ("fanwire/sse", "fanwire/ws", "fanwire/ws-deflate", "refserver/sse"):
        row = idle[(key, 10)]
        assert row["memory_per_conn"] is not None and row["fds_per_conn"] >= 0.9, row
        assert row["cpu_us_per_conn_s"] is not None, row
    assert {r["key"] for r in results["light_load"] if r["step"]["passed"]} >= {
        "fanwire/sse",
        "fanwire/ws",
        "refserver/sse",
    }
    ingest = {(r["key"], r["subscribers"]): r for r in results["ingest"]}
    for kind in ("http", "batch", "ws"):
        for key in (f"fanwire/{kind}", f"fanwire+redis/{kind}"):
            assert ingest[(key, 0)]["acked_per_s"] > 0, ingest[(key, 0)]
    options = results["options"]
    fanout = {(r["variant"], r["transport"]): r for r in options["fanout"]}
    for variant in ("plain", "patterns", "noop"):
        for transport in ("sse", "ws"):
            row = fanout[(variant, transport)]
            assert row["median_delivered_per_s"] > 0 and row["ratio_vs_plain"] > 0, row
    conflate = options["conflate"]
    assert conflate["received"] > 0 and conflate["publisher_ratio"] > 0, conflate
    # every message published to the conflating topic was delivered or counted as conflated
    assert conflate["accounted"], conflate
    presence = results["presence"]
    assert presence["members_counted"] == presence["members"], presence
    assert presence["joins_leaves_per_s"] > 0 and presence["delivered_ratio"] > 0, presence
    per_request = {r["where"]: r for r in results["per_request"]}
    # every token of every stream exactly once, then `end`: in process, native /stream
    # and a fastapi.sse route over fanwire.sse.events
    for where in ("in_process", "stream", "fastapi_sse"):
        row = per_request[where]
        assert row["complete"] and row["duplicates"] == 0 and row["ns_per_token"] > 0, row
        assert row["streams_ended"] == row["streams"], row
    for where in ("stream", "fastapi_sse"):
        assert per_request[where]["server_cpu_us_per_token"] is not None
    many = {r["key"]: r for r in results["many"]}
    for key in ("fanwire/sse", "refserver/sse"):
        row = many[key]
        # every message reached every client, over both load generator processes
        assert row["processes"] == 2 and row["step"]["passed"], row
        assert row["expected"] == row["published"] * row["clients"] > 0, row
        assert row["delivered"] == row["expected"], row
    markdown = (out / "results.md").read_text()
    assert markdown.startswith("# fanwire benchmark")
    for section in (
        "## Idle connections",
        "## Light load",
        "## Publish ingest",
        "## Topic options",
        "## Presence",
        "## Per-request streams",
        "## Many SSE clients",
    ):
        assert section in markdown
    for plot in (
        "delivered_vs_clients.png",
        "latency_vs_load.png",
        "memory_vs_clients.png",
        "idle_per_connection.png",
        "light_load_and_ingest.png",
        "options_presence_tokens.png",
        "many_clients.png",
    ):
        assert (out / plot).stat().st_size > 1000

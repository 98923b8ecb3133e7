"""Results: one JSON file with everything, and a Markdown summary with ratios."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.modes import Mode
from bench.scenarios import ScenarioResult
from bench.stall import StallResult
from bench.steps import Step


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
    }


def write_json(
    path: Path,
    mode: Mode,
    results: list[ScenarioResult],
    stalls: list[StallResult],
    skipped: dict[str, str],
    elapsed: float,
) -> None:
    doc = {
        "mode": asdict(mode),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_s": round(elapsed, 1),
        "machine": machine(),
        "skipped_servers": skipped,
        "scenarios": [asdict(r) | {"key": r.key} for r in results],
        "stall": [_stall_json(s) for s in stalls],
        "ratios": ratios(results),
    }
    path.write_text(json.dumps(doc, indent=1))


# (fanwire transport, other server, other transport): the comparisons reported as ratios.
COMPARISONS = (
    ("sse", "asyncio_queue", "sse"),
    ("sse", "sse_starlette", "sse"),
    ("sse", "broadcaster", "sse"),
    ("ws", "asyncio_queue", "ws"),
    ("sse", "refserver", "sse"),
)


def ratios(results: list[ScenarioResult]) -> list[dict[str, Any]]:
    """fanwire's delivered msgs/s divided by each other design's, per scenario."""
    by_key = {(r.server, r.transport, r.clients, r.payload): r for r in results}
    rows = []
    for (server, transport, clients, payload), mine in by_key.items():
        if server != "fanwire":
            continue
        for fw_transport, other, other_transport in COMPARISONS:
            theirs = by_key.get((other, other_transport, clients, payload))
            if fw_transport != transport or theirs is None:
                continue
            rows.append(
                {
                    "fanwire": f"fanwire/{transport}",
                    "vs": f"{other}/{other_transport}",
                    "clients": clients,
                    "payload": payload,
                    "delivered_ratio": _ratio(mine.delivered_per_s, theirs.delivered_per_s),
                    "memory_ratio": _ratio(mine.memory_per_conn, theirs.memory_per_conn),
                }
            )
    return rows


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _num(value: float | None, fmt: str = ",.0f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{fmt}}{suffix}"


def write_markdown(
    path: Path,
    mode: Mode,
    results: list[ScenarioResult],
    stalls: list[StallResult],
    skipped: dict[str, str],
) -> None:
    lines = [f"# fanwire benchmark ({mode.name} mode)", ""]
    lines += [
        f"Machine: {machine()['cpus']} CPUs, Python {machine()['python']}. "
        f"Window {mode.window_s:g} s, probe {mode.probe_s:g} s, drain {mode.drain_s:g} s.",
        "",
    ]
    lines += [f"Skipped: **{name}**: {why}" for name, why in skipped.items()]
    lines += [
        "",
        "## Sustained throughput",
        "",
        "| design | clients | payload | sustained msg/s | delivered msg/s | p99 ms "
        "| memory/conn | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        note = r.error or ("at ladder ceiling" if r.at_ceiling else "")
        if r.sustained_rate is None and not r.error:
            note = "not sustained at the lowest rate"
        lines.append(
            f"| {r.key} | {r.clients:,} | {r.payload:,} B | {_num(r.sustained_rate, 'g')} "
            f"| {_num(r.delivered_per_s)} | {_num(r.p99_ms, '.2f')} "
            f"| {_num(r.memory_per_conn, ',.0f', ' B')} | {note} |"
        )
    lines += ["", *_ratio_table(results), "", *_stall_table(stalls)]
    path.write_text("\n".join(lines) + "\n")


def _ratio_table(results: list[ScenarioResult]) -> list[str]:
    rows = ratios(results)
    if not rows:
        return ["## Ratios", "", "No fanwire results, so no ratios."]
    out = [
        "## Ratios (fanwire / other)",
        "",
        "| fanwire | vs | clients | payload | delivered msg/s ratio | memory/conn ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        out.append(
            f"| {row['fanwire']} | {row['vs']} | {row['clients']:,} | {row['payload']:,} B "
            f"| {_num(row['delivered_ratio'], '.2f', 'x')} "
            f"| {_num(row['memory_ratio'], '.2f', 'x')} |"
        )
    return out


def _stall_json(s: StallResult) -> dict[str, object]:
    return asdict(s) | {
        "before_p99_ms": s.before_p99_ms,
        "during_p99_ms": s.during_p99_ms,
        "change": s.change,
        "fast_clients_ok": s.fast_clients_ok,
    }


def _stall_table(stalls: list[StallResult]) -> list[str]:
    if not stalls:
        return []
    out = [
        "## One stalled client among fast ones",
        "",
        "Alternating windows (alone, stalled, alone, stalled, ...); p99 is the median of the "
        "windows' p99s, and each window's p99 follows in brackets.",
        "",
        "| design | fast clients | msg/s | p99 ms alone | p99 ms stalled | change "
        "| fast clients ok | server closed the stalled one | server RSS growth |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for s in stalls:
        ok = s.error or ("yes" if s.fast_clients_ok else _first_failure(s.during))
        growth = None if s.rss_growth is None else s.rss_growth / 1024
        change = None if s.change is None else 100 * s.change
        out.append(
            f"| {s.server}/{s.transport} | {s.clients} | {s.rate:g} "
            f"| {_p99s(s.before_p99_ms, s.before)} | {_p99s(s.during_p99_ms, s.during)} "
            f"| {_num(change, '+.0f', '%')} | {ok} "
            f"| {s.stalled_closed_by_server} of {len(s.during)} "
            f"| {_num(growth, ',.0f', ' KiB')} |"
        )
    return out


def _p99s(median: float | None, steps: list[Step]) -> str:
    each = ", ".join(f"{step.p99_ms:.2f}" for step in steps)
    return f"{_num(median, '.2f')} [{each}]" if steps else "n/a"


def _first_failure(steps: list[Step]) -> str:
    return next((step.why for step in steps if not step.passed), "n/a")

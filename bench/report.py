"""Results: one JSON file with everything, and a Markdown summary with ratios."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.idle import IdleResult
from bench.ingest import IngestResult
from bench.light import LightResult
from bench.many import TARGET_P99_MS, ManyResult
from bench.modes import Mode
from bench.options import OptionsRun
from bench.per_request import PerRequestResult
from bench.presence import PresenceResult
from bench.scenarios import ScenarioResult
from bench.stall import StallResult
from bench.steps import Step


@dataclass
class More:
    """The idle, light-load and ingest scenarios' results."""

    idle: list[IdleResult] = field(default_factory=list)
    light: list[LightResult] = field(default_factory=list)
    ingest: list[IngestResult] = field(default_factory=list)
    options: OptionsRun | None = None
    presence: PresenceResult | None = None
    per_request: list[PerRequestResult] = field(default_factory=list)
    many: list[ManyResult] = field(default_factory=list)

    def extra_count(self) -> int:
        """How many results the options, presence, per-request and many-clients scenarios
        gave."""
        options = (
            len(self.options.fanout) + (self.options.conflate is not None) if self.options else 0
        )
        return options + (self.presence is not None) + len(self.per_request) + len(self.many)

    def options_failures(self) -> list[str]:
        if self.options is None:
            return []
        bad = [
            f"{r.key} options fan-out: {r.error or 'nothing delivered'}"
            for r in self.options.fanout
            if r.error or not r.median_delivered_per_s
        ]
        c = self.options.conflate
        if c is not None and (c.error or not c.received or not c.publisher_ratio):
            bad.append(f"fanwire conflating topic: {c.error or 'no figure'}")
        return bad

    def presence_failures(self) -> list[str]:
        p = self.presence
        if p is None or (not p.error and p.joins_leaves_per_s and p.delivered_ratio):
            return []
        return [f"fanwire presence: {p.error or 'no figure'}"]


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
    more: More | None = None,
) -> None:
    more = more or More()
    doc = {
        "mode": asdict(mode),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_s": round(elapsed, 1),
        "machine": machine(),
        "skipped_servers": skipped,
        "scenarios": [asdict(r) | {"key": r.key} for r in results],
        "stall": [_stall_json(s) for s in stalls],
        "ratios": ratios(results),
        "idle": [asdict(r) | {"key": r.key} for r in more.idle],
        "idle_ratios": idle_ratios(more.idle),
        "light_load": [asdict(r) | {"key": r.key} for r in more.light],
        "light_ratios": light_ratios(more.light),
        "ingest": [asdict(r) | {"key": r.key} for r in more.ingest],
        "ingest_ratios": ingest_ratios(more.ingest),
        "options": asdict(more.options) if more.options else None,
        "presence": asdict(more.presence) if more.presence else None,
        "per_request": [asdict(r) | {"key": r.key} for r in more.per_request],
        "many": [asdict(r) | {"key": r.key} for r in more.many],
        "many_ratios": many_ratios(more.many),
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


def idle_ratios(idle: list[IdleResult]) -> list[dict[str, Any]]:
    """fanwire's memory, descriptors and CPU per idle connection over each other
    server's, same transport, client kind and count (SSE: also over the C++ reference)."""
    rows = []
    for mine in (r for r in idle if r.server == "fanwire" and not r.server_deflate):
        for theirs in idle:
            same = (theirs.transport, theirs.deflate_client, theirs.clients) == (
                mine.transport,
                mine.deflate_client,
                mine.clients,
            )
            if theirs.server == "fanwire" or not same:
                continue
            rows.append(
                {
                    "fanwire": mine.key,
                    "vs": theirs.key,
                    "clients": mine.clients,
                    "memory_ratio": _ratio(mine.memory_per_conn, theirs.memory_per_conn),
                    "fds_ratio": _ratio(mine.fds_per_conn, theirs.fds_per_conn),
                    "cpu_ratio": _ratio(mine.cpu_us_per_conn_s, theirs.cpu_us_per_conn_s),
                }
            )
    return rows


def light_ratios(light: list[LightResult]) -> list[dict[str, Any]]:
    """fanwire's light-load p50 and p99 over each other server's on the same transport."""
    rows = []
    for mine in (r for r in light if r.server == "fanwire" and r.step):
        for theirs in light:
            if theirs.server == "fanwire" or theirs.transport != mine.transport or not theirs.step:
                continue
            assert mine.step is not None
            rows.append(
                {
                    "fanwire": mine.key,
                    "vs": theirs.key,
                    "p50_ratio": _ratio(mine.step.p50_ms, theirs.step.p50_ms),
                    "p99_ratio": _ratio(mine.step.p99_ms, theirs.step.p99_ms),
                }
            )
    return rows


def ingest_ratios(ingest: list[IngestResult]) -> list[dict[str, Any]]:
    """fanwire's acked publishes/s over each other server's single-message HTTP
    publishes (same subscriber count), and Redis mode over in-memory (same kind)."""
    memory = {
        (r.kind, r.subscribers): r
        for r in ingest
        if r.server == "fanwire" and r.backend == "memory"
    }
    rows = []
    for mine in (r for r in ingest if r.server == "fanwire"):
        others = [r for r in ingest if r.server != "fanwire" and r.subscribers == mine.subscribers]
        if mine.backend == "redis" and (mine.kind, mine.subscribers) in memory:
            others.append(memory[(mine.kind, mine.subscribers)])
        for theirs in others:
            rows.append(
                {
                    "fanwire": mine.key,
                    "vs": theirs.key,
                    "subscribers": mine.subscribers,
                    "acked_ratio": _ratio(mine.acked_per_s, theirs.acked_per_s),
                }
            )
    return rows


def many_ratios(many: list[ManyResult]) -> list[dict[str, Any]]:
    """fanwire's latency, memory and CPU with many clients over the C++ reference's."""
    rows = []
    for mine in (r for r in many if r.server == "fanwire" and r.step):
        for theirs in (r for r in many if r.server != "fanwire" and r.step):
            assert mine.step is not None and theirs.step is not None
            rows.append(
                {
                    "fanwire": mine.key,
                    "vs": theirs.key,
                    "clients": mine.clients,
                    "p99_ratio": _ratio(mine.step.p99_ms, theirs.step.p99_ms),
                    "memory_ratio": _ratio(mine.memory_per_conn, theirs.memory_per_conn),
                    "cpu_ratio": _ratio(mine.step.server_cpu, theirs.step.server_cpu),
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
    more: More | None = None,
) -> None:
    more = more or More()
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
    lines += ["", *_idle_table(more.idle, mode), "", *_light_table(more.light, mode)]
    lines += ["", *_ingest_table(more.ingest, mode)]
    lines += ["", *_options_table(more.options, mode), "", *_presence_table(more.presence, mode)]
    lines += ["", *_per_request_table(more.per_request)]
    lines += ["", *_many_table(more.many)]
    path.write_text("\n".join(lines) + "\n")


def _ratio_rows(rows: list[dict[str, Any]], keys: list[str]) -> list[str]:
    return [
        "| "
        + " | ".join(
            _num(row[k], ".2f", "x") if k.endswith("_ratio") else f"{row[k]}" for k in keys
        )
        + " |"
        for row in rows
    ]


def _idle_table(idle: list[IdleResult], mode: Mode) -> list[str]:
    if not idle:
        return []
    out = [
        "## Idle connections",
        "",
        f"Heartbeats every {mode.idle_heartbeat_s:g} s (fanwire; the baselines send none), "
        f"CPU over {mode.idle_window_s:g} s idle less the server's own rate with no client. "
        "`-deflate`: the clients offer permessage-deflate (negotiated: how many the server "
        "accepted).",
        "",
        "| design | clients | memory/conn | fds/conn | CPU µs/s per conn | server cpu "
        "| deflate negotiated | connect s | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in idle:
        out.append(
            f"| {r.key} | {r.clients:,} | {_num(r.memory_per_conn, ',.0f', ' B')} "
            f"| {_num(r.fds_per_conn, '.2f')} | {_num(r.cpu_us_per_conn_s, '.2f')} "
            f"| {_num(r.server_cpu, '.1%')} | {r.deflate_negotiated} "
            f"| {_num(r.connect_s, '.1f')} | {r.error or ''} |"
        )
    rows = idle_ratios(idle)
    if rows:
        out += [
            "",
            "| fanwire | vs | clients | memory ratio | fds ratio | CPU ratio |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
            *_ratio_rows(
                rows, ["fanwire", "vs", "clients", "memory_ratio", "fds_ratio", "cpu_ratio"]
            ),
        ]
    return out


def _light_table(light: list[LightResult], mode: Mode) -> list[str]:
    if not light:
        return []
    out = [
        "## Light load",
        "",
        f"{mode.light_clients:,} subscribers at {mode.light_rate:g} msg/s of 100 B for "
        f"{mode.light_s:g} s (anchor: Durable Streams, p99 5.5 ms at 1,000 SSE x 50/s).",
        "",
        "| design | clients | msg/s | p50 ms | p99 ms | max ms | server cpu | loadgen cpu "
        "| result |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in light:
        s = r.step
        if s is None:
            out.append(
                f"| {r.key} | {r.clients:,} | {r.rate:g} | n/a | n/a | n/a | | | {r.error} |"
            )
            continue
        out.append(
            f"| {r.key} | {r.clients:,} | {r.rate:g} | {s.p50_ms:.2f} | {s.p99_ms:.2f} "
            f"| {s.max_ms:.2f} | {s.server_cpu:.0%} | {s.loadgen_cpu:.0%} | {s.why} |"
        )
    rows = light_ratios(light)
    if rows:
        out += [
            "",
            "| fanwire | vs | p50 ratio | p99 ratio |",
            "| --- | --- | ---: | ---: |",
            *_ratio_rows(rows, ["fanwire", "vs", "p50_ratio", "p99_ratio"]),
        ]
    return out


def _ingest_table(ingest: list[IngestResult], mode: Mode) -> list[str]:
    if not ingest:
        return []
    out = [
        "## Publish ingest",
        "",
        f"Closed loop for {mode.ingest_s:g} s, 100 B payloads (bench/ingest.py: `http` one "
        "message per POST, 4 connections x 64 pipelined; `batch` 100 messages per POST, "
        "2 x 4; `ws` one WebSocket, 256 in flight). Subscribers are SSE clients.",
        "",
        "| design | subscribers | acked msg/s | failed | delivered msg/s | disconnected "
        "| p50 / p99 ms | server cpu | loadgen cpu | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in ingest:
        out.append(
            f"| {r.key} | {r.subscribers:,} | {_num(r.acked_per_s)} | {r.failed} "
            f"| {_num(r.delivered_per_s)} | {r.disconnected} "
            f"| {_num(r.p50_ms, '.1f')} / {_num(r.p99_ms, '.1f')} | {_num(r.server_cpu, '.0%')} "
            f"| {_num(r.loadgen_cpu, '.0%')} | {r.error or ''} |"
        )
    rows = ingest_ratios(ingest)
    if rows:
        out += [
            "",
            "| fanwire | vs | subscribers | acked ratio |",
            "| --- | --- | ---: | ---: |",
            *_ratio_rows(rows, ["fanwire", "vs", "subscribers", "acked_ratio"]),
        ]
    return out


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


def _options_table(run: OptionsRun | None, mode: Mode) -> list[str]:
    if run is None:
        return []
    out = [
        "## Topic options",
        "",
        f"{mode.options_clients:,} subscribers fed by a closed-loop batch flood for "
        f"{mode.options_s:g} s, {mode.options_rounds} alternating rounds, medians: `plain` no "
        "`FANWIRE_TOPICS`; `patterns` five patterns, none matching the topic; `noop` the "
        "same plus the topic's own pattern with the default retention (bench/options.py).",
        "",
        "| server | delivered msg/s (median) | each round | ratio vs plain | note |",
        "| --- | ---: | --- | ---: | --- |",
    ]
    for r in run.fanout:
        rounds = ", ".join(f"{v:,.0f}" for v in r.delivered_per_s)
        out.append(
            f"| {r.key} | {_num(r.median_delivered_per_s)} | {rounds} "
            f"| {_num(r.ratio_vs_plain, '.2f', 'x')} | {r.error or ''} |"
        )
    c = run.conflate
    if c is not None:
        out += [
            "",
            f"Conflating topic ({c.keys} keys, retention {c.retention}, `ws_policy` conflate): "
            f"one WebSocket client stalled {c.stall_s:g} s of a {c.window_s:g} s window at "
            f"{c.rate:g} msg/s.",
            "",
            "| published | lagging client received | delivered msg/s | told conflated "
            "| all accounted for | fast client received | publisher acked/s conflating / plain "
            "| ratio | note |",
            "| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |",
            f"| {c.published:,} | {c.received:,} | {_num(c.delivered_per_s)} | {c.conflated:,} "
            f"| {'yes' if c.accounted else 'no'} | {c.fast_client_received:,} "
            f"| {_num(_median(c.publisher_conflating))} / {_num(_median(c.publisher_plain))} "
            f"| {_num(c.publisher_ratio, '.2f', 'x')} | {c.error or ''} |",
        ]
    return out


def _median(values: list[float]) -> float | None:
    import statistics

    return statistics.median(values) if values else None


def _presence_table(p: PresenceResult | None, mode: Mode) -> list[str]:
    if p is None:
        return []
    out = [
        "## Presence",
        "",
        f"{p.members:,} WebSocket members (`presence` and `join_leave` on; "
        f"{p.members_counted:,} counted by `GET /topics/bench/presence`). Churn: one more "
        f"client subscribes with presence and unsubscribes, closed loop, {p.churn_s:g} s: "
        f"**{_num(p.joins_leaves_per_s)} joins+leaves/s**, {_num(p.notices_per_s)} "
        "join/leave notices/s to the members.",
        "",
        f"Delivered at {p.rate:g} msg/s of 100 B for {mode.presence_s:g} s, same clients, "
        "presence off and on (alternating; medians):",
        "",
        "| presence | delivered msg/s | p99 ms | server CPU µs per delivered | connect s "
        "| all passed |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, side in (("off", p.off), ("on", p.on)):
        out.append(
            f"| {name} | {_num(side.median('delivered_per_s'))} "
            f"| {_num(side.median('p99_ms'), '.2f')} "
            f"| {_num(side.median('cpu_us_per_delivered'), '.2f')} "
            f"| {_num(side.median('connect_s'), '.1f')} "
            f"| {'yes' if side.passed and all(side.passed) else 'no'} |"
        )
    out += [
        "",
        f"On over off: delivered {_num(p.delivered_ratio, '.2f', 'x')}, server CPU per "
        f"delivered message {_num(p.cpu_ratio, '.2f', 'x')}. {p.error or ''}",
    ]
    return out


def _per_request_table(rows: list[PerRequestResult]) -> list[str]:
    if not rows:
        return []
    out = [
        "## Per-request streams",
        "",
        "One stream per answer: its tokens published, then `broker.aend`, one subscriber "
        "reading to `end`: in process, over HTTP by native `GET /stream` and by a "
        "`fastapi.sse` route over `fanwire.sse.events`. Complete: every token exactly once, "
        "then `end`, on every stream (bench/per_request.py).",
        "",
        "| where | streams x tokens | concurrency | tokens/s | ns per token "
        "| server CPU µs per token | complete | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        out.append(
            f"| {r.key} | {r.streams:,} x {r.tokens_per_stream:,} | {r.concurrency} "
            f"| {_num(r.tokens_per_s)} | {_num(r.ns_per_token)} "
            f"| {_num(r.server_cpu_us_per_token, '.1f')} | {'yes' if r.complete else 'no'} "
            f"| {r.error or ''} |"
        )
    return out


def _many_table(rows: list[ManyResult]) -> list[str]:
    if not rows:
        return []
    r0 = rows[0]
    out = [
        "## Many SSE clients",
        "",
        f"{r0.clients:,} SSE clients at {r0.rate:g} msg/s each (100 B) for {r0.window_s:g} s, "
        "spread over several load generator processes, one publisher (bench/many.py). "
        f"Target: every message delivered, p99 under {TARGET_P99_MS:g} ms. Memory and fds "
        "per connection: server RSS and descriptors with them connected over without. CPU: "
        "share of one core (load generators: all processes summed); CPU ms per message: "
        "per burst to every client (a p99 far above the server's waited for a core). "
        "The asyncio baselines "
        "are left out (they sustained 2-5 msg/s at 5,000 clients, p99 0.6-0.9 s).",
        "",
        "| design | clients | processes | delivered / expected | missed | disconnected "
        "| p50 ms | p99 ms | max ms | memory/conn | fds/conn | server cpu | loadgen cpu "
        "| CPU ms per message: server / loadgen | connect s | target met | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        s = r.step
        lat = f"{s.p50_ms:.2f} | {s.p99_ms:.2f} | {s.max_ms:.2f}" if s else "n/a | n/a | n/a"
        out.append(
            f"| {r.key} | {r.clients:,} | {r.processes} | {r.delivered:,} / {r.expected:,} "
            f"| {s.missed if s else 'n/a'} | {s.disconnected if s else 'n/a'} | {lat} "
            f"| {_num(r.memory_per_conn, ',.0f', ' B')} | {_num(r.fds_per_conn, '.2f')} "
            f"| {_num(s.server_cpu if s else None, '.0%')} "
            f"| {_num(s.loadgen_cpu if s else None, '.0%')} "
            f"| {_num(r.server_cpu_ms_per_message, '.1f')} / "
            f"{_num(r.loadgen_cpu_ms_per_message, '.1f')} | {_num(r.connect_s, '.1f')} "
            f"| {'yes' if r.target_met else 'no'} | {r.error or (s.why if s else '')} |"
        )
    ratio_rows = many_ratios(rows)
    if ratio_rows:
        out += [
            "",
            "| fanwire | vs | clients | p99 ratio | memory ratio | server CPU ratio |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
            *_ratio_rows(
                ratio_rows, ["fanwire", "vs", "clients", "p99_ratio", "memory_ratio", "cpu_ratio"]
            ),
        ]
    return out

"""The benchmark runner: builds the tools, runs every scenario on every server, and
writes results JSON, a Markdown table and PNG plots to bench/results/<mode>/."""

from __future__ import annotations

import argparse
import resource
from collections.abc import Iterator
from pathlib import Path

from bench import plots, report
from bench.context import Context
from bench.idle import IdleResult, run_idle, variants
from bench.ingest import IngestResult, run_ingest
from bench.light import LightResult, run_light
from bench.many import SERVERS as MANY_SERVERS
from bench.many import ManyResult, run_many
from bench.modes import MODES, Mode
from bench.options import OptionsRun, run_options
from bench.paths import BUILD, RESULTS
from bench.per_request import PerRequestResult, run_per_request
from bench.presence import PresenceResult, run_presence
from bench.progress import Progress
from bench.scenarios import ScenarioResult, run_scenario
from bench.servers import ServerSpec, all_specs, unavailable_reason
from bench.stall import StallResult, run_stall
from bench.tools import build_loadgen, build_refserver

SCENARIOS = (
    "throughput",
    "stall",
    "idle",
    "light",
    "ingest",
    "options",
    "presence",
    "per_request",
    "many",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--smoke", action="store_true", help="tiny run, a few seconds (CI)")
    group.add_argument("--quick", action="store_true", help="a few minutes")
    p.add_argument(
        "--servers",
        help="comma-separated subset: fanwire,asyncio_queue,sse_starlette,broadcaster,refserver",
    )
    p.add_argument("--transports", help="comma-separated subset: sse,ws")
    p.add_argument("--clients", help="comma-separated client counts (overrides the mode)")
    p.add_argument("--no-stall", action="store_true", help="skip the stalled-client scenario")
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (default: all)",
    )
    p.add_argument("--idle-clients", help="comma-separated idle client counts (overrides the mode)")
    p.add_argument(
        "--fanwire-cmd",
        help='command that starts fanwire, "{port}" is replaced '
        "(default: python -m fanwire --host 127.0.0.1 --port {port})",
    )
    p.add_argument("--out", type=Path, help="results folder (default bench/results/<mode>)")
    return p.parse_args(argv)


def pick_mode(args: argparse.Namespace) -> Mode:
    mode = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.clients:
        counts = tuple(int(c) for c in args.clients.split(","))
        mode = Mode(**{**mode.__dict__, "clients": counts})
    if args.idle_clients:
        counts = tuple(int(c) for c in args.idle_clients.split(","))
        mode = Mode(**{**mode.__dict__, "idle_clients": counts})
    return mode


def wanted(args: argparse.Namespace, scenario: str) -> bool:
    return scenario in args.scenarios.split(",")


def pick_specs(
    args: argparse.Namespace, refserver: Path, progress: Progress
) -> tuple[list[ServerSpec], dict[str, str]]:
    wanted = set(args.servers.split(",")) if args.servers else None
    specs, skipped = [], {}
    for spec in all_specs(refserver, args.fanwire_cmd):
        if wanted is not None and spec.name not in wanted:
            continue
        reason = unavailable_reason(spec)
        if reason:
            skipped[spec.name] = reason
            progress.say(f"skipping {spec.name}: {reason}")
        else:
            specs.append(spec)
    return specs, skipped


def transports(spec: ServerSpec, args: argparse.Namespace) -> Iterator[str]:
    allowed = set(args.transports.split(",")) if args.transports else None
    yield from (t for t in spec.transports if allowed is None or t in allowed)


def predicted_start(mode: Mode, previous: ScenarioResult | None, clients: int) -> float:
    """Start the search near where the previous client count saturated (delivered msgs/s
    is roughly constant across client counts), never above the mode's start rate."""
    if previous is None:
        return mode.start_rate
    if previous.delivered_per_s is None:
        return 0  # the lowest rung
    return min(mode.start_rate, 2 * previous.delivered_per_s / clients)


def run_throughput(
    ctx: Context, specs: list[ServerSpec], args: argparse.Namespace
) -> list[ScenarioResult]:
    results = []
    for spec in specs:
        for transport in transports(spec, args):
            previous: dict[int, ScenarioResult] = {}
            for clients in ctx.mode.clients:
                for payload in ctx.mode.payloads_for(clients):
                    start = predicted_start(ctx.mode, previous.get(payload), clients)
                    res = run_scenario(ctx, spec, transport, clients, payload, start)
                    previous[payload] = res
                    results.append(res)
    return results


def run_idles(ctx: Context, specs: list[ServerSpec], args: argparse.Namespace) -> list[IdleResult]:
    if not wanted(args, "idle"):
        return []
    allowed = set(args.transports.split(",")) if args.transports else None
    return [
        res
        for spec in specs
        for transport, deflate, server_deflate in variants(spec, allowed)
        for res in run_idle(ctx, spec, transport, deflate, server_deflate)
    ]


def run_lights(
    ctx: Context, specs: list[ServerSpec], args: argparse.Namespace
) -> list[LightResult]:
    if not wanted(args, "light"):
        return []
    return [run_light(ctx, spec, t) for spec in specs for t in transports(spec, args)]


def run_ingests(
    ctx: Context, specs: list[ServerSpec], args: argparse.Namespace
) -> list[IngestResult]:
    if not wanted(args, "ingest"):
        return []
    out = []
    for spec in specs:
        out += run_ingest(ctx, spec, "memory")
        if spec.name == "fanwire":
            out += run_ingest(ctx, spec, "redis")
    return out


def _fanwire(specs: list[ServerSpec]) -> ServerSpec | None:
    return next((s for s in specs if s.name == "fanwire"), None)


def run_options_scenario(
    ctx: Context, specs: list[ServerSpec], args: argparse.Namespace
) -> OptionsRun | None:
    """fanwire only: topic options against the same server without them."""
    spec = _fanwire(specs)
    if spec is None or not wanted(args, "options"):
        return None
    allowed = set(args.transports.split(",")) if args.transports else None
    return run_options(ctx, spec, allowed)


def run_presence_scenario(
    ctx: Context, specs: list[ServerSpec], args: argparse.Namespace
) -> PresenceResult | None:
    spec = _fanwire(specs)
    if spec is None or not wanted(args, "presence"):
        return None
    return run_presence(ctx, spec)


def run_per_requests(
    ctx: Context, specs: list[ServerSpec], args: argparse.Namespace
) -> list[PerRequestResult]:
    if _fanwire(specs) is None or not wanted(args, "per_request"):
        return []
    return run_per_request(ctx)


def run_manys(ctx: Context, specs: list[ServerSpec], args: argparse.Namespace) -> list[ManyResult]:
    """Many SSE clients at a low rate: fanwire and the C++ reference (bench/many.py)."""
    if not wanted(args, "many") or (args.transports and "sse" not in args.transports.split(",")):
        return []
    return [run_many(ctx, spec) for spec in specs if spec.name in MANY_SERVERS]


def run_stalls(
    ctx: Context, specs: list[ServerSpec], args: argparse.Namespace
) -> list[StallResult]:
    if args.no_stall or not wanted(args, "stall"):
        return []
    return [run_stall(ctx, spec, t) for spec in specs for t in transports(spec, args)]


def raise_fd_limit() -> None:
    """5,000 clients need more than the usual 1,024 descriptors (servers inherit this)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def smoke_failures(
    results: list[ScenarioResult], stalls: list[StallResult], more: report.More
) -> list[str]:
    bad = [
        f"{r.key}: {r.error or 'not sustained'}"
        for r in results
        if r.error or r.sustained_rate is None
    ]
    bad += [f"{s.server}/{s.transport} stall: {s.error}" for s in stalls if s.error]
    bad += [f"{r.key} idle at {r.clients}: {r.error}" for r in more.idle if r.error]
    bad += [f"{r.key} light load: {r.error}" for r in more.light if r.error]
    bad += [
        f"{r.key} ingest ({r.subscribers} subscribers): {r.error or 'nothing acknowledged'}"
        for r in more.ingest
        if r.error or not r.acked_per_s
    ]
    bad += more.options_failures() + more.presence_failures()
    bad += [
        f"{r.key} per-request streams: {r.error or 'not every token arrived'}"
        for r in more.per_request
        if r.error or not r.complete
    ]
    bad += [
        f"{r.key} many clients: {r.error or 'no step'}" for r in more.many if r.error or not r.step
    ]
    return bad


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode = pick_mode(args)
    progress = Progress()
    raise_fd_limit()
    progress.say(f"mode {mode.name}: building the C++ load generator and reference server")
    loadgen, refserver = build_loadgen(), build_refserver()
    out = args.out or RESULTS / mode.name
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(mode, loadgen, BUILD / "logs" / mode.name, progress)
    specs, skipped = pick_specs(args, refserver, progress)
    results = run_throughput(ctx, specs, args) if wanted(args, "throughput") else []
    stalls = run_stalls(ctx, specs, args)
    more = report.More(run_idles(ctx, specs, args), run_lights(ctx, specs, args))
    more.ingest = run_ingests(ctx, specs, args)
    more.options = run_options_scenario(ctx, specs, args)
    more.presence = run_presence_scenario(ctx, specs, args)
    more.per_request = run_per_requests(ctx, specs, args)
    more.many = run_manys(ctx, specs, args)
    report.write_json(
        out / "results.json", mode, results, stalls, skipped, progress.elapsed(), more
    )
    report.write_markdown(out / "results.md", mode, results, stalls, skipped, more)
    pngs = plots.write_all(results, mode, out, more)
    progress.say(f"wrote {out / 'results.json'}, results.md and {len(pngs)} plots")
    failures = smoke_failures(results, stalls, more)
    for failure in failures:
        progress.say(f"FAILED {failure}")
    total = len(results) + len(stalls) + len(more.idle) + len(more.light) + len(more.ingest)
    total += more.extra_count()
    summary = f"{total - len(failures)} passed, {len(failures)} failed"
    print(f"bench: {summary}", flush=True)
    return 1 if failures else 0

"""One measured step (a publish rate held for a window) and whether it was sustained."""

from __future__ import annotations

from dataclasses import dataclass

from bench.loadgen import Report

ACHIEVED_SHARE = 0.95  # the publisher must reach 95% of the offered rate
LATENCY_LIMIT_MS = 1000  # p99 above this: the server is building a backlog, not keeping up
GIVE_UP_MS = 3000  # a message this late ends the step at once (it has failed anyway)


@dataclass
class Step:
    rate: float  # offered msg/s
    achieved_rate: float  # what the publisher managed
    seconds: float
    clients: int
    passed: bool
    why: str  # "ok", or the first reason it is not sustained
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    missed: int
    disconnected: int
    server_cpu: float  # share of one core the server used during the step
    loadgen_cpu: float  # share of one core the load generator used

    @property
    def delivered_per_s(self) -> float:
        return self.rate * self.clients


def failure_reason(r: Report) -> str:
    """Why a step is not sustained, or "ok" (see README: sustained throughput)."""
    if r["streaming_at_start"] < r["clients"]:
        return f"{r['clients'] - r['streaming_at_start']} clients were not connected"
    if r["disconnected"]:
        return f"{r['disconnected']} clients disconnected"
    if r["publish_connection_lost"] or r["publish_failed"]:
        return f"{r['publish_failed']} publishes failed"
    if r["achieved_rate"] < ACHIEVED_SHARE * r["rate"]:
        return f"publisher reached only {r['achieved_rate']:.0f}/s"
    if r["missed_total"]:
        return f"{r['missed_total']} deliveries missed or late"
    if r["out_of_order_total"]:
        return f"{r['out_of_order_total']} out of order"
    if r["aborted"]:
        return f"gave up: a message was over {GIVE_UP_MS} ms late"
    if r["latency_ms"]["p99"] > LATENCY_LIMIT_MS:
        return f"p99 over {LATENCY_LIMIT_MS} ms: backlog growing"
    return "ok"


def make_step(r: Report, server_cpu_s: float) -> Step:
    why = failure_reason(r)
    lat = r["latency_ms"]
    wall = max(r["wall_s"], 1e-9)
    return Step(
        rate=r["rate"],
        achieved_rate=r["achieved_rate"],
        seconds=r["duration_s"],
        clients=r["clients"],
        passed=why == "ok",
        why=why,
        p50_ms=lat["p50"],
        p90_ms=lat["p90"],
        p99_ms=lat["p99"],
        max_ms=lat["max"],
        missed=r["missed_total"],
        disconnected=r["disconnected"],
        server_cpu=server_cpu_s / wall,
        loadgen_cpu=r["cpu"]["loadgen_s"] / wall,
    )


def describe(step: Step) -> str:
    verdict = "ok  " if step.passed else "FAIL"
    return (
        f"{step.rate:>8g}/s x {step.seconds:g}s {verdict} p50 {step.p50_ms:7.2f} ms "
        f"p99 {step.p99_ms:8.2f} ms  server cpu {step.server_cpu:4.0%} "
        f"loadgen cpu {step.loadgen_cpu:4.0%}  ({step.why})"
    )

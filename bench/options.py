"""Topic options: what they cost on topics that don't use them, and a conflating topic.

**Cost on other topics.** Three fanwire servers run at once: `plain` (no
``FANWIRE_TOPICS``), `patterns` (the README's four example patterns, none matching the
bench topic) and `noop` (the same plus an exact `bench` pattern whose option changes
nothing: ``retention`` 1000, the default). In alternating rounds (plain, patterns, noop,
plain, ...; ``mode.options_rounds``), ``mode.options_clients`` subscribers (SSE with
``policy=drop_oldest``; WebSocket, whose default is drop_oldest) are fed by a closed-loop
batch flood (100 messages per POST, 2 connections x 4 in flight) for ``mode.options_s``:
the delivered msgs/s is the fan-out rate the server reached. The medians over the rounds
are compared with `plain`'s as ratios (1.00x: no cost).

**A conflating topic** (on the `patterns` server): `conflated.bench` takes
``{"retention": 2000, "conflate_key": "k", "ws_policy": "conflate"}``; the payloads carry
``"k": seq % 100`` (100 keys) and are 16 KB (the kernel buffers ~4 MB for a stalled
socket before the server sees it lag). One WebSocket client (receive buffer 4 KB) subscribes,
then reads nothing for ``mode.conflate_stall_s`` while ``mode.conflate_rate`` msg/s are
published for ``mode.conflate_s``, then reads again: its delivered msgs/s, the sum of the
``conflated`` counts it was told (``info messages_conflated``) and whether received +
conflated equals what was published (every message either delivered or counted). Then
the publisher's closed-loop rate (same batch flood, same keyed payloads, no subscriber)
on the conflating topic against the plain `bench` topic, alternating rounds.
"""

from __future__ import annotations

import statistics
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.context import TOPIC, Context
from bench.loadgen import LoadgenError
from bench.servers import ServerProcess, ServerSpec
from bench.wsclient import WsClient

PAYLOAD = 100
# The conflating topic's messages are 16 KB (as in the stall scenario): the kernel buffers
# ~4 MB for a stalled socket before the server sees it lag, and conflation starts there.
CONFLATE_PAYLOAD = 16_384
KEYS = 100
CONFLATED = "conflated.bench"
FLOOD = ("batch", 2, 4, 100)  # kind, connections, requests in flight each, messages each
# README "Topic options", one pattern per kind of topic, none matching `bench`
PATTERNS: dict[str, dict[str, Any]] = {
    "chat.*": {"retention": 500, "max_age": 86400, "dedupe_window": 600},
    "ticker.*": {"retention": 2000, "conflate_key": "symbol", "cache": True},
    "user.*": {"retention": 50, "auto_create": True, "idle_ttl": 3600},
    "request.*": {"retention": 1000, "auto_create": True, "idle_ttl": 30},
    "conflated.*": {"retention": 2000, "conflate_key": "k", "ws_policy": "conflate"},
}
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "patterns": PATTERNS,
    "noop": {**PATTERNS, TOPIC: {"retention": 1000}},  # the default FANWIRE_RETENTION
}


@dataclass
class OptionsResult:
    """One variant on one transport: delivered msgs/s under a flood, each round."""

    variant: str
    transport: str
    clients: int
    delivered_per_s: list[float] = field(default_factory=list)
    acked_per_s: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    median_delivered_per_s: float | None = None
    ratio_vs_plain: float | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        return f"fanwire[{self.variant}]/{self.transport}"


@dataclass
class ConflateResult:
    keys: int
    retention: int
    rate: float
    window_s: float
    stall_s: float
    published: int = 0
    received: int = 0  # by the lagging client
    conflated: int = 0  # the counts it was told
    accounted: bool = False  # received + conflated == published
    delivered_per_s: float | None = None  # received / window
    fast_client_received: int = 0  # a WebSocket client that keeps up, same topic
    publisher_conflating: list[float] = field(default_factory=list)  # acked/s, each round
    publisher_plain: list[float] = field(default_factory=list)
    publisher_ratio: float | None = None  # conflating over plain, medians
    error: str | None = None


@dataclass
class OptionsRun:
    fanout: list[OptionsResult] = field(default_factory=list)
    conflate: ConflateResult | None = None


def run_options(ctx: Context, spec: ServerSpec, allowed: set[str] | None) -> OptionsRun:
    mode = ctx.mode
    out = OptionsRun()
    transports = [t for t in spec.transports if allowed is None or t in allowed]
    out.fanout = [OptionsResult(v, t, mode.options_clients) for t in transports for v in VARIANTS]
    ctx.progress.say(f"{spec.name}: topic options ({', '.join(VARIANTS)}), then conflation")
    try:
        with ExitStack() as stack:
            servers: dict[str, ServerProcess] = {}
            for variant, topics in VARIANTS.items():
                env = {"FANWIRE_TOPICS": orjson.dumps(topics).decode()} if topics else {}
                log = ctx.server_log(f"{spec.name}-{variant}")
                servers[variant] = stack.enter_context(ServerProcess(spec, log, env=env))
                servers[variant].create_topic(TOPIC)
            for _ in range(mode.options_rounds):
                for res in out.fanout:
                    _fanout(ctx, servers[res.variant], res)
            for res in out.fanout:
                _summarise(res, out.fanout)
            if "ws" in transports:
                out.conflate = run_conflate(ctx, servers["patterns"])
    except (LoadgenError, RuntimeError, OSError) as exc:
        for res in out.fanout:
            res.error = res.error or str(exc)
        ctx.progress.say(f"  error: {exc}")
    return out


def _fanout(ctx: Context, server: ServerProcess, res: OptionsResult) -> None:
    kind, conns, window, batch = FLOOD
    path = f"/stream?topic={TOPIC}&policy=drop_oldest"
    try:
        with ctx.open_loadgen(server, res.transport, res.clients, sse_path=path) as lg:
            ready = lg.ready()
            if ready["streaming"] < res.clients:
                raise LoadgenError(f"only {ready['streaming']}/{res.clients} connected")
            lg.sync()
            cpu0 = server.cpu_seconds()
            r = lg.flood(ctx.mode.options_s, PAYLOAD, kind, conns, window, batch)
            wall = max(r["wall_s"], 1e-9)
            res.server_cpu.append((server.cpu_seconds() - cpu0) / wall)
        res.delivered_per_s.append(r["delivered_total"] / wall)
        res.acked_per_s.append(r["acked_per_s"])
        ctx.progress.say(
            f"  {res.key}: {res.delivered_per_s[-1]:,.0f} delivered/s "
            f"({r['acked_per_s']:,.0f} acked/s, {r['disconnected']} disconnected), "
            f"server cpu {res.server_cpu[-1]:.0%}"
        )
    except (LoadgenError, OSError) as exc:
        res.error = str(exc)
        ctx.progress.say(f"  {res.key}: error: {exc}")


def _summarise(res: OptionsResult, all_results: list[OptionsResult]) -> None:
    if res.delivered_per_s:
        res.median_delivered_per_s = statistics.median(res.delivered_per_s)
    plain = next(
        (r for r in all_results if r.variant == "plain" and r.transport == res.transport), None
    )
    if plain and plain.median_delivered_per_s and res.median_delivered_per_s:
        res.ratio_vs_plain = res.median_delivered_per_s / plain.median_delivered_per_s


class _Lagging(threading.Thread):
    """Subscribes, reads nothing for `stall_s`, then reads until told to stop."""

    def __init__(self, port: int, stall_s: float) -> None:
        super().__init__(daemon=True)
        self.client = WsClient(port, rcvbuf=4096)
        self.client.wait_for(time.monotonic() + 10, type="info", message="connected")
        self.client.send({"type": "subscribe", "topic": CONFLATED, "request_id": "1"})
        self.client.wait_for(time.monotonic() + 10, type="ack")
        self.stall_s = stall_s
        self.go = threading.Event()
        self.stop_at = float("inf")
        self.received = self.conflated = 0
        self.error: str | None = None

    def run(self) -> None:
        self.go.wait(60)
        time.sleep(self.stall_s)
        try:
            while time.monotonic() < self.stop_at:
                for msg in self.client.messages(min(self.stop_at, time.monotonic() + 0.2)):
                    if msg.get("type") == "event" and msg["data"].get("seq", -1) >= 0:
                        self.received += 1
                    elif msg.get("message") == "messages_conflated":
                        self.conflated += int(msg["conflated"])
        except OSError as exc:
            self.error = str(exc)
        finally:
            self.client.close()


def run_conflate(ctx: Context, server: ServerProcess) -> ConflateResult:
    mode = ctx.mode
    res = ConflateResult(
        KEYS,
        PATTERNS["conflated.*"]["retention"],
        mode.conflate_rate,
        mode.conflate_s,
        mode.conflate_stall_s,
    )
    ctx.progress.say(
        f"  conflating topic: {KEYS} keys, {res.rate:g} msg/s for {res.window_s:g} s, "
        f"one WebSocket client stalled {res.stall_s:g} s"
    )
    try:
        server.create_topic(CONFLATED)
        lagging = _Lagging(server.port, res.stall_s)
        lagging.start()
        with ctx.open_loadgen(server, "ws", 1, topic=CONFLATED, keys=KEYS) as lg:
            lg.ready()
            lg.sync()
            lagging.go.set()
            started = time.monotonic()
            step = lg.step(res.rate, res.window_s, CONFLATE_PAYLOAD, mode.drain_s)
            lagging.stop_at = time.monotonic() + mode.drain_s
            lagging.join(mode.drain_s + 30)
            wall = time.monotonic() - started
        res.published = int(step["published"])
        res.fast_client_received = int(step["received_total"])
        res.received, res.conflated = lagging.received, lagging.conflated
        res.accounted = res.received + res.conflated == res.published
        res.delivered_per_s = res.received / wall
        res.error = lagging.error
        ctx.progress.say(
            f"  lagging client: {res.received:,} received ({res.delivered_per_s:,.0f}/s), told "
            f"{res.conflated:,} conflated, of {res.published:,} published "
            f"({'all accounted for' if res.accounted else 'NOT accounted for'}); the fast "
            f"client received {res.fast_client_received:,}"
        )
        _publisher_rates(ctx, server, res)
    except (LoadgenError, RuntimeError, OSError) as exc:
        res.error = str(exc)
        ctx.progress.say(f"  error: {exc}")
    return res


def _publisher_rates(ctx: Context, server: ServerProcess, res: ConflateResult) -> None:
    kind, conns, window, batch = FLOOD
    for _ in range(ctx.mode.options_rounds):
        for topic, rates in ((CONFLATED, res.publisher_conflating), (TOPIC, res.publisher_plain)):
            with ctx.open_loadgen(server, "ws", 0, topic=topic, keys=KEYS) as lg:
                lg.ready()
                r = lg.flood(ctx.mode.options_s, PAYLOAD, kind, conns, window, batch)
            rates.append(r["acked_per_s"])
    if res.publisher_conflating and res.publisher_plain:
        plain = statistics.median(res.publisher_plain)
        conflating = statistics.median(res.publisher_conflating)
        res.publisher_ratio = conflating / plain if plain else None
        ctx.progress.say(
            f"  publisher: {conflating:,.0f} acked/s to the conflating topic, {plain:,.0f} "
            f"to a plain one ({_x(res.publisher_ratio)})"
        )


def _x(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"

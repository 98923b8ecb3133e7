"""Presence: the cost of members and their join/leave notices.

One fanwire server. ``mode.presence_members`` WebSocket clients subscribe to `bench`
with ``"presence": true, "join_leave": true`` (each a member, each told every join and
leave); how long they took to connect and be counted is reported.

- **Join/leave rate**: beside them, one more WebSocket subscribes with
  ``"presence": true`` and unsubscribes, in a closed loop (each waits for its `ack`),
  for ``mode.presence_churn_s``: joins + leaves per second, each one a notice to every
  member (notices/s = that x members).
- **Delivered rate, presence on vs off**: the same number of clients, subscribed with
  presence and join_leave (on) or plainly (off), at ``mode.presence_rate`` msg/s of 100 B
  for ``mode.presence_s``, alternating (off, on, ...; ``mode.presence_rounds``): delivered
  msgs/s, p99, server CPU per delivered message, and on over off as ratios.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from bench.context import TOPIC, Context
from bench.idle import wait_subscribed
from bench.loadgen import Loadgen, LoadgenError
from bench.servers import ServerProcess, ServerSpec
from bench.steps import GIVE_UP_MS, describe, make_step
from bench.wsclient import WsClient

PAYLOAD = 100
MEMBER = ',"presence":true,"join_leave":true'


@dataclass
class PresenceSide:
    presence: bool
    delivered_per_s: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    cpu_us_per_delivered: list[float] = field(default_factory=list)
    connect_s: list[float] = field(default_factory=list)
    passed: list[bool] = field(default_factory=list)

    def median(self, attr: str) -> float | None:
        values: list[float] = getattr(self, attr)
        return statistics.median(values) if values else None


@dataclass
class PresenceResult:
    members: int
    rate: float
    churn_s: float
    members_counted: int = 0  # GET /topics/bench/presence "count" with the members on
    churn_cycles: int = 0  # subscribe + unsubscribe pairs
    joins_leaves_per_s: float | None = None
    notices_per_s: float | None = None  # joins_leaves_per_s x members
    off: PresenceSide = field(default_factory=lambda: PresenceSide(False))
    on: PresenceSide = field(default_factory=lambda: PresenceSide(True))
    delivered_ratio: float | None = None  # on over off, medians
    cpu_ratio: float | None = None  # server CPU per delivered message, on over off
    error: str | None = None


def run_presence(ctx: Context, spec: ServerSpec) -> PresenceResult:
    mode = ctx.mode
    res = PresenceResult(mode.presence_members, mode.presence_rate, mode.presence_churn_s)
    ctx.progress.say(f"{spec.name}/ws: presence, {res.members:,} members")
    try:
        with ServerProcess(spec, ctx.server_log(spec.name)) as server:
            server.create_topic(TOPIC)
            for _ in range(mode.presence_rounds):
                for side in (res.off, res.on):
                    _deliver(ctx, server, res, side)
            _summarise(res)
    except (LoadgenError, RuntimeError, OSError) as exc:
        res.error = str(exc)
        ctx.progress.say(f"  error: {exc}")
    return res


def _members(ctx: Context, server: ServerProcess, res: PresenceResult, on: bool) -> Loadgen:
    lg = ctx.open_loadgen(server, "ws", res.members, subscribe_extra=MEMBER if on else "")
    try:
        ready = lg.ready()
        if ready["streaming"] < res.members:
            raise LoadgenError(f"only {ready['streaming']}/{res.members} connected")
        if wait_subscribed(server, res.members, 30 + res.members / 100) < res.members:
            raise LoadgenError("the server did not count every subscriber")
        synced = lg.sync()
        if synced["synced"] < res.members:
            raise LoadgenError(f"only {synced['synced']}/{res.members} subscribed")
    except BaseException:
        lg.close()
        raise
    return lg


def _deliver(ctx: Context, server: ServerProcess, res: PresenceResult, side: PresenceSide) -> None:
    started = time.monotonic()
    with _members(ctx, server, res, side.presence) as lg:
        side.connect_s.append(time.monotonic() - started)
        if side.presence and not res.churn_cycles:
            _count_members(server, res)
            _churn(ctx, server, res, lg)
        cpu0 = server.cpu_seconds()
        report = lg.step(res.rate, ctx.mode.presence_s, PAYLOAD, ctx.mode.drain_s, GIVE_UP_MS)
        cpu = server.cpu_seconds() - cpu0
    step = make_step(report, cpu)
    wall = max(report["wall_s"], 1e-9)
    delivered = report["received_total"]
    side.delivered_per_s.append(delivered / wall)
    side.p99_ms.append(step.p99_ms)
    side.passed.append(step.passed)
    if delivered:
        side.cpu_us_per_delivered.append(cpu / delivered * 1e6)
    label = "on " if side.presence else "off"
    ctx.progress.say(f"  presence {label}: {describe(step)}")
    time.sleep(1.0)  # the members leave before the next side connects


def _count_members(server: ServerProcess, res: PresenceResult) -> None:
    status, body = server.request("GET", f"/topics/{TOPIC}/presence")
    if status == 200 and isinstance(body, dict):
        res.members_counted = int(body.get("count") or 0)


def _churn(ctx: Context, server: ServerProcess, res: PresenceResult, lg: Loadgen) -> None:
    """One more member joins and leaves as fast as the server acknowledges.

    The server may answer before its notices reach the members (they are queued and
    written at the members' next wake-up), so the time runs until one message published
    after the last leave reached every member: notices and messages arrive in order, so
    by then every member has every notice."""
    with WsClient(server.port) as ws:
        ws.wait_for(time.monotonic() + 10, type="info", message="connected")
        started = time.monotonic()
        deadline = started + res.churn_s
        while time.monotonic() < deadline:
            ws.send({"type": "subscribe", "topic": TOPIC, "presence": True, "request_id": "1"})
            ws.wait_for(time.monotonic() + 10, type="ack", request_type="subscribe")
            ws.send({"type": "unsubscribe", "topic": TOPIC, "request_id": "2"})
            ws.wait_for(time.monotonic() + 10, type="ack", request_type="unsubscribe")
            res.churn_cycles += 1
        after = lg.step(1000, 0.001, PAYLOAD, 60)  # one message, to every member
        if after["received_total"] < res.members:
            raise LoadgenError(f"only {after['received_total']}/{res.members} got the churn")
        wall = time.monotonic() - started
    res.joins_leaves_per_s = 2 * res.churn_cycles / wall
    res.notices_per_s = res.joins_leaves_per_s * res.members
    ctx.progress.say(
        f"  join/leave churn at {res.members_counted:,} members: "
        f"{res.joins_leaves_per_s:,.0f} joins+leaves/s ({res.notices_per_s:,.0f} notices/s)"
    )


def _summarise(res: PresenceResult) -> None:
    on, off = res.on.median("delivered_per_s"), res.off.median("delivered_per_s")
    res.delivered_ratio = on / off if on and off else None
    on, off = res.on.median("cpu_us_per_delivered"), res.off.median("cpu_us_per_delivered")
    res.cpu_ratio = on / off if on and off else None

"""Idle connections: server memory, file descriptors and CPU per connection.

For each server and transport (WebSocket twice: with a client that offers
permessage-deflate, as every browser does, and without), at each count of
``mode.idle_clients``: connect that many subscribers, wait until the server counts them
all, then read the server's RSS (``VmRSS``) and open descriptors (``/proc/PID/fd``)
against the same server before they connected, and its CPU time over
``mode.idle_window_s`` seconds of idleness, less its CPU rate with no client at all.
Heartbeats are on: fanwire sends one every ``mode.idle_heartbeat_s`` seconds on SSE
(``FANWIRE_HEARTBEAT_INTERVAL``) and on WebSocket (``/ws?heartbeat=``); uvicorn's own
WebSocket pings (every 20 s) run too. The baselines send none.

Clients are spread over load generator processes of at most ``PER_PROCESS`` each (a
process here may hold 20,000 descriptors).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from bench.context import TOPIC, Context
from bench.loadgen import Loadgen, LoadgenError
from bench.servers import ServerProcess, ServerSpec

PER_PROCESS = 8_000
BASELINE_S = 5.0  # the server's own idle CPU rate, before any client, measured this long


@dataclass
class IdleResult:
    server: str
    role: str
    transport: str
    deflate_client: bool  # the clients offered permessage-deflate
    clients: int
    heartbeat_s: float
    window_s: float
    deflate_negotiated: int = 0  # clients whose offer the server accepted
    subscribed: int = 0  # subscribers the server counted (GET /health)
    memory_per_conn: float | None = None  # bytes of server RSS per idle connection
    fds_per_conn: float | None = None
    cpu_us_per_conn_s: float | None = None  # µs of server CPU per second per connection
    server_cpu: float | None = None  # share of one core the server used, idle, with them
    loadgen_cpu: float | None = None  # share of one core the load generators used
    connect_s: float | None = None
    server_deflate: bool = False  # fanwire run with FANWIRE_WS_PER_MESSAGE_DEFLATE on
    error: str | None = None

    @property
    def key(self) -> str:
        suffix = "-deflate" if self.deflate_client else ""
        return f"{self.server}/{self.transport}{suffix}{'-on' if self.server_deflate else ''}"


def variants(spec: ServerSpec, allowed: set[str] | None) -> list[tuple[str, bool, bool]]:
    """(transport, deflate client, fanwire's deflate setting on) this server is measured
    with: fanwire's WebSocket with a deflate client twice, with its default (off) and
    with the setting on (what every such client cost before it was off)."""
    out: list[tuple[str, bool, bool]] = []
    for transport in spec.transports:
        if allowed is None or transport in allowed:
            out.append((transport, False, False))
            if transport == "ws":
                out.append((transport, True, False))
                if spec.name == "fanwire":
                    out.append((transport, True, True))
    return out


def split(clients: int, most: int) -> list[int]:
    """``clients`` shared as evenly as possible by the fewest processes of ``most`` each."""
    processes = max(1, -(-clients // most))
    return [clients // processes + (i < clients % processes) for i in range(processes)]


def _proc_cpu(pid: int) -> float:
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def subscribers(server: ServerProcess) -> int:
    status, body = server.request("GET", "/health")
    if status != 200 or not isinstance(body, dict):
        return 0
    return int(body.get("active_subscriber_count") or 0)


def wait_subscribed(server: ServerProcess, clients: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    count = subscribers(server)
    while count < clients and time.monotonic() < deadline:
        time.sleep(0.2)
        count = subscribers(server)
    return count


def run_idle(
    ctx: Context, spec: ServerSpec, transport: str, deflate: bool, server_deflate: bool = False
) -> list[IdleResult]:
    """One server started once; each client count measured in turn on it."""
    mode = ctx.mode
    hb = mode.idle_heartbeat_s
    results = [
        IdleResult(
            spec.name,
            spec.role,
            transport,
            deflate,
            n,
            hb,
            mode.idle_window_s,
            server_deflate=server_deflate,
        )
        for n in mode.idle_clients
    ]
    label = results[0].key if results else spec.name
    ctx.progress.say(f"{label}: idle connections {', '.join(str(n) for n in mode.idle_clients)}")
    env = {"FANWIRE_HEARTBEAT_INTERVAL": f"{hb:g}"} if spec.name == "fanwire" else {}
    if server_deflate:
        env["FANWIRE_WS_PER_MESSAGE_DEFLATE"] = "true"
    try:
        with ServerProcess(spec, ctx.server_log(spec.name), env=env) as server:
            server.create_topic(TOPIC)
            time.sleep(0.5)
            cpu0, t0 = server.cpu_seconds(), time.monotonic()
            time.sleep(min(BASELINE_S, mode.idle_window_s))
            own_rate = (server.cpu_seconds() - cpu0) / (time.monotonic() - t0)
            for res in results:
                _measure(ctx, server, res, own_rate)
    except (LoadgenError, RuntimeError, OSError) as exc:
        for res in results:
            res.error = res.error or str(exc)
        ctx.progress.say(f"  error: {exc}")
    return results


def _measure(ctx: Context, server: ServerProcess, res: IdleResult, own_rate: float) -> None:
    rss0, fds0 = server.rss_bytes(), server.fd_count()
    ws_path = f"/ws?heartbeat={res.heartbeat_s:g}"
    counts = split(res.clients, PER_PROCESS)
    pool: list[Loadgen] = []
    try:
        for n in counts:
            pool.append(
                ctx.open_loadgen(
                    server, res.transport, n, ws_path=ws_path, deflate=res.deflate_client
                )
            )
        started = time.monotonic()
        readies = [lg.ready() for lg in pool]
        res.connect_s = time.monotonic() - started
        streaming = sum(r["streaming"] for r in readies)
        res.deflate_negotiated = sum(r.get("deflate", 0) for r in readies)
        if streaming < res.clients:
            raise LoadgenError(f"only {streaming}/{res.clients} clients connected")
        res.subscribed = wait_subscribed(server, res.clients, 30 + res.clients / 500)
        time.sleep(1.0)  # let allocations settle
        res.memory_per_conn = (server.rss_bytes() - rss0) / res.clients
        res.fds_per_conn = (server.fd_count() - fds0) / res.clients
        lg_cpu0 = sum(_proc_cpu(lg.proc.pid) for lg in pool)
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        time.sleep(res.window_s)
        wall = time.monotonic() - t0
        used = server.cpu_seconds() - cpu0
        res.server_cpu = used / wall
        res.loadgen_cpu = (sum(_proc_cpu(lg.proc.pid) for lg in pool) - lg_cpu0) / wall
        res.cpu_us_per_conn_s = max(0.0, used / wall - own_rate) / res.clients * 1e6
        ctx.progress.say(
            f"  {res.clients} clients: {res.memory_per_conn:,.0f} B and "
            f"{res.fds_per_conn:.2f} fds per connection, {res.cpu_us_per_conn_s:.2f} µs/s "
            f"CPU per connection (deflate negotiated by {res.deflate_negotiated})"
        )
    except (LoadgenError, OSError) as exc:
        res.error = str(exc)
        ctx.progress.say(f"  {res.clients} clients: error: {exc}")
    finally:
        for lg in pool:
            lg.close()
        time.sleep(1.0)  # the server sees them go before the next count

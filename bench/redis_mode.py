"""In-memory vs Redis mode: publish throughput and publish->receive latency (loopback).

For each mode a real ``python -m fanwire`` server runs (Redis mode against a real
``redis-server`` on a free port). Measured through WebSocket clients in this process:

- ``publish_per_s``: acknowledged publishes/s from 8 connections, 8 in flight each
  (an ack in Redis mode means Redis accepted the message), for ``--seconds``;
- ``delivered_per_s``: events/s a subscribed WebSocket client received meanwhile;
- ``latency_ms``: publish sent -> event received by the subscriber, messages paced
  every 5 ms (no load), p50/p90/p99; ``loaded_latency_ms`` the same during the flood.

The modes alternate for ``--rounds`` rounds; the machine may be shared, so compare rows
of one run. Run: ``python -m bench.redis_mode [--seconds 3] [--rounds 2]`` (writes
bench/results/redis_mode.{json,md}).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from fanwire.testing.servers import FanwireServer, RedisServer

RESULTS = Path(__file__).resolve().parent / "results"
PUBLISHERS, WINDOW, PACED = 8, 8, 300


async def ws_open(url: str) -> ClientConnection:
    ws = await connect(url, max_size=None, ping_interval=None, proxy=None)
    await ws.recv()  # info connected
    return ws


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values) or [float("nan")]
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3, 3)  # noqa: E731
    return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "count": len(values)}


class Subscriber:
    """A subscribed WebSocket recording publish->receive latency of every event."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws, self.latencies, self.count = ws, [], 0
        self.task = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        async for text in self.ws:
            message = orjson.loads(text)
            if message.get("type") == "event":
                self.latencies.append(time.time() - message["data"]["t"])
                self.count += 1


async def publisher(url: str, topic: str, until: float) -> int:
    """Publish with WINDOW requests in flight until ``until``; acks received."""
    ws = await ws_open(url)
    slots, acked = asyncio.Semaphore(WINDOW), 0

    async def read_acks() -> None:
        nonlocal acked
        async for text in ws:
            reply = orjson.loads(text)
            assert reply["type"] == "ack", reply
            acked += 1
            slots.release()

    reader = asyncio.ensure_future(read_acks())
    while time.monotonic() < until:
        await slots.acquire()
        body = {"type": "publish", "topic": topic, "data": {"t": time.time()}}
        await ws.send(orjson.dumps(body).decode())
    await asyncio.sleep(0.5)  # the last acks
    reader.cancel()
    await ws.close()
    return acked


async def measure(server: FanwireServer, seconds: float) -> dict[str, Any]:
    topic = "bench"
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        for _ in range(100):  # Redis mode: 503 until the server connected to Redis
            if (await http.post(server.url + "/topics", json={"name": topic})).status_code == 201:
                break
            await asyncio.sleep(0.1)
    sub_ws = await ws_open(server.ws_url)
    await sub_ws.send(orjson.dumps({"type": "subscribe", "topic": topic}).decode())
    sub = Subscriber(sub_ws)
    pub = await ws_open(server.ws_url)
    for _ in range(PACED):  # unloaded latency
        await pub.send(
            orjson.dumps({"type": "publish", "topic": topic, "data": {"t": time.time()}}).decode()
        )
        await pub.recv()
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.3)
    paced, sub.latencies, before = list(sub.latencies), [], sub.count
    start = time.monotonic()
    acked = await asyncio.gather(
        *(publisher(server.ws_url, topic, start + seconds) for _ in range(PUBLISHERS))
    )
    elapsed = time.monotonic() - start
    delivered = sub.count - before
    sub.task.cancel()
    await sub_ws.close()
    await pub.close()
    return {
        "publish_per_s": round(sum(acked) / seconds),
        "delivered_per_s": round(delivered / elapsed),
        "latency_ms": percentiles(paced),
        "loaded_latency_ms": percentiles(sub.latencies),
    }


def machine() -> dict[str, Any]:
    redis_version = (
        subprocess.run(
            [shutil.which("redis-server") or "redis-server", "--version"],
            capture_output=True,
            text=True,
        )
        .stdout.split()[2]
        .removeprefix("v=")
    )
    return {
        "cpus": os.cpu_count(),
        "cpu": next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            platform.processor(),
        ),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "redis": redis_version,
        "load_avg_before": os.getloadavg(),
        "hiredis": importlib.util.find_spec("hiredis") is not None,
    }


async def run(seconds: float, rounds: int) -> dict[str, Any]:
    """Alternate the modes ``rounds`` times (the machine is shared: its load drifts)."""
    logs = Path(tempfile.mkdtemp(prefix="fanwire-bench-redis-"))
    env = {"FANWIRE_DEMO_RATE": "0", "FANWIRE_WS_QUEUE_SIZE": "1000"}
    info = machine()
    redis = RedisServer(log_dir=logs).start()
    modes: dict[str, list[Any]] = {"memory": [], "redis": []}
    try:
        for _ in range(rounds):
            for mode, extra in (("memory", {}), ("redis", {"FANWIRE_REDIS_URL": redis.url})):
                server = FanwireServer(env={**env, **extra}, log_dir=logs).start()
                try:
                    modes[mode].append(await measure(server, seconds))
                finally:
                    server.stop()
    finally:
        redis.stop()
    info["load_avg_after"] = os.getloadavg()
    medians = {m: statistics.median(r["publish_per_s"] for r in runs) for m, runs in modes.items()}
    return {
        "machine": info,
        "seconds": seconds,
        "publishers": PUBLISHERS,
        "window": WINDOW,
        "rounds": modes,
        "median_publish_per_s": medians,
        "redis_over_memory": round(medians["redis"] / medians["memory"], 3),
    }


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    rows = [
        "| mode | publishes/s (acked) | delivered/s | latency p50 / p99 ms, paced"
        " | latency p50 / p99 ms, under load |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for mode, runs in result["rounds"].items():
        for number, r in enumerate(runs, 1):
            lat, loaded = r["latency_ms"], r["loaded_latency_ms"]
            rows.append(
                f"| {mode} #{number} | {r['publish_per_s']:,} | {r['delivered_per_s']:,} | "
                f"{lat['p50']} / {lat['p99']} | {loaded['p50']} / {loaded['p99']} |"
            )
    medians = result["median_publish_per_s"]
    return "\n".join(
        [
            "# In-memory vs Redis mode (bench/redis_mode.py)",
            "",
            f"Machine: {m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, Redis {m['redis']}, "
            f"load average {tuple(round(x, 2) for x in m['load_avg_before'])} before the run "
            f"and {tuple(round(x, 2) for x in m['load_avg_after'])} after (a shared machine); "
            "everything on loopback, one process each for the clients, the server and Redis "
            f"(redis-py with hiredis: {m['hiredis']}).",
            f"{result['publishers']} WebSocket publishers x {result['window']} in flight for "
            f"{result['seconds']} s, one subscribed WebSocket client; "
            "paced latency: one message every 5 ms.",
            "",
            *rows,
            "",
            f"Median acknowledged publishes/s: memory {medians['memory']:,.0f}, redis "
            f"{medians['redis']:,.0f}: Redis mode does {result['redis_over_memory']:.0%} of "
            "the in-memory rate (each publish is a Redis round trip, pipelined with concurrent"
            " ones, and comes back to the node through its reader).",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    result = asyncio.run(run(args.seconds, args.rounds))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "redis_mode.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "redis_mode.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()

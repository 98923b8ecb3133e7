"""In-process micro-benchmark of the fan-out core (no network).

Publishes M messages to N subscribers on one event loop and measures publishes/s and
deliveries/s through fanwire's Python API, beside the design it replaces: one
``asyncio.Queue`` per subscriber filled with ``put_nowait`` and drained one message at a
time. Also measures the memory of an idle subscriber in each design.

Run: ``python -m bench.micro`` (writes bench/results/micro.{json,md,png}).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import time
from pathlib import Path
from typing import Any

import orjson

import fanwire

RESULTS = Path(__file__).resolve().parent / "results"
BURST = 100  # messages published between two yields to the loop (both designs)
QUEUE = 1000  # per-subscriber queue capacity (both designs): bursts never overflow it
PAYLOAD = {"sensor": "t-17", "value": 21.5, "pad": "x" * 60}  # ~100 bytes encoded
# (subscribers, messages): about the same number of deliveries per point.
FULL = [(1, 200_000), (100, 20_000), (1_000, 3_000), (10_000, 300)]
QUICK = [(1, 20_000), (100, 2_000), (1_000, 300), (10_000, 30)]


async def run_fanwire(subscribers: int, messages: int) -> float:
    """Seconds to publish ``messages`` and deliver each to every subscriber."""
    # wake_interval=0: consumers wake as soon as a burst is out (the server's default
    # rate-limits wake-ups, which this tight in-process publisher would simply outrun).
    broker = fanwire.Broker(retention=QUEUE, wake_interval=0)
    broker.create_topic("bench")
    subs = [broker.subscribe("bench", queue_size=QUEUE) for _ in range(subscribers)]

    async def consume(sub: fanwire.Subscription) -> None:
        while sub.received + sub.dropped < messages:  # a drop fails the assert below
            await sub.next_batch()  # bytes: the SSE frames of every ready message

    tasks = [asyncio.create_task(consume(s)) for s in subs]
    await asyncio.sleep(0)
    start = time.perf_counter()
    for i in range(messages):
        broker.publish("bench", PAYLOAD)
        if i % BURST == BURST - 1:
            await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    assert sum(s.dropped for s in subs) == 0
    for s in subs:
        s.close()
    broker.close()
    return elapsed


async def run_asyncio_queue(subscribers: int, messages: int) -> float:
    """The same workload on an asyncio.Queue per subscriber (the pure-asyncio design)."""
    queues: list[asyncio.Queue[bytes]] = [asyncio.Queue(maxsize=QUEUE) for _ in range(subscribers)]

    async def consume(queue: asyncio.Queue[bytes]) -> None:
        for _ in range(messages):
            await queue.get()

    tasks = [asyncio.create_task(consume(q)) for q in queues]
    await asyncio.sleep(0)
    start = time.perf_counter()
    for i in range(messages):
        frame = b"data: " + orjson.dumps({"topic": "bench", "data": PAYLOAD, "ts": time.time()})
        for queue in queues:
            queue.put_nowait(frame)
        if i % BURST == BURST - 1:
            await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    return time.perf_counter() - start


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def heap_bytes() -> int:
    """Bytes allocated by glibc malloc (C++ objects of the core), via mallinfo2()."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


async def idle_memory(count: int = 20_000) -> dict[str, float]:
    """Bytes per idle subscriber, measured before anything else ran in this process.

    fanwire_core: the C++ heap (mallinfo2) per core subscriber, exact; the others: RSS
    delta per subscriber, including Python objects (fanwire Subscription, or an
    asyncio.Queue with its parked getter task, as an idle client of that design holds).
    """
    broker = fanwire.Broker(retention=QUEUE)
    broker.create_topic("idle")
    from fanwire import _core

    base = heap_bytes()
    core_subs = [
        broker._core.subscribe("idle", i + 1, 0, None, _core.Policy.drop_oldest, QUEUE)
        for i in range(count)
    ]
    core = (heap_bytes() - base) / count
    for s in core_subs:
        s.close()
    del core_subs
    gc.collect()
    base = rss_bytes()
    subs = [broker.subscribe("idle", queue_size=QUEUE) for _ in range(count)]
    api = (rss_bytes() - base) / count
    for sub in subs:
        sub.close()
    del subs
    gc.collect()
    base = rss_bytes()
    queues = [asyncio.Queue(maxsize=QUEUE) for _ in range(count)]
    getters = [asyncio.ensure_future(q.get()) for q in queues]
    await asyncio.sleep(0)  # every getter is now parked in its queue, as an idle client is
    queue = (rss_bytes() - base) / count
    for g in getters:
        g.cancel()
    await asyncio.gather(*getters, return_exceptions=True)
    broker.close()
    return {"fanwire_core": core, "fanwire_subscription": api, "asyncio_queue": queue}


async def bench(points: list[tuple[int, int]]) -> dict[str, Any]:
    memory = await idle_memory()  # first, so freed memory of the runs cannot hide it
    print("  idle subscriber bytes: " + ", ".join(f"{k} {v:.0f}" for k, v in memory.items()))
    rows = []
    for subscribers, messages in points:
        row: dict[str, Any] = {"subscribers": subscribers, "messages": messages}
        for name, runner in (("fanwire", run_fanwire), ("asyncio_queue", run_asyncio_queue)):
            gc.collect()
            elapsed = await runner(subscribers, messages)
            row[name] = {
                "seconds": elapsed,
                "publishes_per_s": messages / elapsed,
                "deliveries_per_s": messages * subscribers / elapsed,
            }
        row["ratio"] = row["fanwire"]["deliveries_per_s"] / row["asyncio_queue"]["deliveries_per_s"]
        print(
            f"  N={subscribers:>6}: fanwire {row['fanwire']['deliveries_per_s']:>12,.0f}"
            f" deliveries/s, asyncio.Queue {row['asyncio_queue']['deliveries_per_s']:>12,.0f}"
            f" deliveries/s, ratio {row['ratio']:.1f}x",
            flush=True,
        )
        rows.append(row)
    return {
        "machine": machine(),
        "burst": BURST,
        "queue": QUEUE,
        "rows": rows,
        "idle_bytes_per_subscriber": memory,
    }


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "fanwire": fanwire.__version__,
    }


def write(results: dict[str, Any], stem: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "| subscribers | fanwire deliveries/s | asyncio.Queue deliveries/s | ratio |"
        " fanwire publishes/s | asyncio.Queue publishes/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        f, q = r["fanwire"], r["asyncio_queue"]
        lines.append(
            f"| {r['subscribers']:,} | {f['deliveries_per_s']:,.0f} |"
            f" {q['deliveries_per_s']:,.0f} | **{r['ratio']:.1f}x** |"
            f" {f['publishes_per_s']:,.0f} | {q['publishes_per_s']:,.0f} |"
        )
    mem = results["idle_bytes_per_subscriber"]
    lines += [
        "",
        "Idle subscriber memory: fanwire core (C++ heap, mallinfo2) "
        f"{mem['fanwire_core']:.0f} B; RSS delta per subscriber: fanwire Subscription "
        "(core + Python) "
        f"{mem['fanwire_subscription']:.0f} B, asyncio.Queue + parked getter "
        f"{mem['asyncio_queue']:.0f} B.",
        "",
    ]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines))
    plot(results, RESULTS / f"{stem}.png")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["subscribers"] for r in results["rows"]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    designs = (("fanwire", "fanwire (C++ core)"), ("asyncio_queue", "asyncio.Queue per client"))
    for name, label in designs:
        ax.plot(xs, [r[name]["deliveries_per_s"] for r in results["rows"]], "o-", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("subscribers")
    ax.set_ylabel("deliveries / s (in-process)")
    ax.set_title("In-process fan-out: deliveries per second")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer messages")
    parser.add_argument("--out", default="micro", help="results file stem under bench/results")
    args = parser.parse_args(argv)
    print("fanwire in-process micro-benchmark", flush=True)
    results = asyncio.run(bench(QUICK if args.quick else FULL))
    write(results, args.out)
    print(f"wrote {RESULTS / args.out}.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The core under load through the Python API: many subscribers, threads, churn, memory."""

import asyncio
import gc
import threading

from core_helpers import sse_frames

import fanwire
from fanwire import _core

TOPICS = ["t0", "t1", "t2", "t3"]


async def consume(sub, expected: int, out: list) -> None:
    while len(out) < expected:
        batch = await asyncio.wait_for(sub.next_batch(), 30)
        out.extend(f["id"] for f in sse_frames(batch))


def test_four_publisher_threads_to_1000_subscribers_in_order():
    per_thread = 500

    async def main():
        broker = fanwire.Broker(retention=per_thread * 4)
        for t in TOPICS:
            broker.create_topic(t)
        subs = [broker.subscribe(TOPICS[i % 4], queue_size=per_thread) for i in range(1000)]
        received = [[] for _ in subs]
        tasks = [
            asyncio.create_task(consume(s, per_thread, r))
            for s, r in zip(subs, received, strict=True)
        ]
        published = {t: [] for t in TOPICS}

        def publisher(topic: str) -> None:
            for i in range(per_thread):
                published[topic].append(broker.publish(topic, {"i": i}))

        threads = [threading.Thread(target=publisher, args=(t,)) for t in TOPICS]
        for th in threads:
            th.start()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        for th in threads:
            th.join()
        for i, ids in enumerate(received):
            assert ids == published[TOPICS[i % 4]], f"subscriber {i} out of order or missing"
        assert sum(s.dropped for s in subs) == 0
        for s in subs:
            s.close()

    asyncio.run(main())


def test_many_publisher_threads_on_one_topic_keep_one_order_for_everyone():
    async def main():
        broker = fanwire.Broker(retention=4000)
        broker.create_topic("t")
        subs = [broker.subscribe("t", queue_size=4000) for _ in range(200)]
        received = [[] for _ in subs]
        tasks = [
            asyncio.create_task(consume(s, 4000, r)) for s, r in zip(subs, received, strict=True)
        ]
        threads = [
            threading.Thread(target=lambda: [broker.publish("t", 0) for _ in range(1000)])
            for _ in range(4)
        ]
        for th in threads:
            th.start()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        for th in threads:
            th.join()
        assert all(r == received[0] for r in received)
        assert len(set(received[0])) == 4000

    asyncio.run(main())


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_memory_returns_to_baseline_after_subscribers_come_and_go_under_traffic():
    async def churn(broker: fanwire.Broker) -> None:
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                for t in TOPICS:
                    broker.publish(t, {"pad": "x" * 200})

        thread = threading.Thread(target=traffic)
        thread.start()
        try:
            for _ in range(1000 // 50):
                subs = [broker.subscribe(TOPICS[i % 4], last_n=5, queue_size=20) for i in range(50)]
                for s in subs:
                    await s.next_batch(timeout=0.001)
                for s in subs:
                    s.close()
        finally:
            stop.set()
            thread.join()

    async def main():
        broker = fanwire.Broker(retention=100)
        for t in TOPICS:
            broker.create_topic(t)
            for i in range(200):  # fill the retention ring: it then holds exactly 100
                broker.publish(t, i)
        await churn(broker)  # warm-up: allocator pools, rings at full size
        gc.collect()
        base_rss = rss_kib()
        base = _core_counts(broker)
        await churn(broker)
        gc.collect()
        after = _core_counts(broker)
        assert after["subscribers"] == base["subscribers"] == 0
        # Only the (full) retention rings hold messages: no message leaked.
        assert after["messages"] == base["messages"]
        assert rss_kib() - base_rss < 2048, "RSS grew by more than 2 MiB after 1,000 subscribers"
        assert broker.stats()["subscriber_count"] == 0
        broker.close()

    asyncio.run(main())


def _core_counts(broker: fanwire.Broker) -> dict:
    """Core objects alive in the process (a broker's own counters count only what its
    topics hold, which cannot show a leak)."""
    live = _core.live_in_process()
    return {"messages": live.messages, "subscribers": live.subscribers}


def test_idle_subscriber_costs_under_2_kib_in_the_core():
    """Measured with the allocator: RSS over 10,000 idle subscribers of one topic."""

    async def main():
        broker = fanwire.Broker()
        broker.create_topic("t")
        core_subs = []
        gc.collect()
        before = rss_kib()
        for i in range(10_000):
            core_subs.append(
                broker._core.subscribe("t", i + 1, 0, None, _core.Policy.drop_oldest, 1000)
            )
        per_sub = (rss_kib() - before) * 1024 / 10_000
        assert per_sub < 2048, f"{per_sub:.0f} bytes per idle subscriber"
        for s in core_subs:
            s.close()

    asyncio.run(main())

"""Slow WebSocket consumers (PROTOCOL.md, "Slow consumers"): a client that stops reading.

Under ``disconnect`` the client gets ``error`` ``SLOW_CONSUMER`` and close 1008, then
resumes with ``since``; under ``drop_oldest`` it gets ``info`` ``messages_dropped`` with
the count and stays connected. A healthy client beside it gets every message in order.
"""

import asyncio
import itertools
import os

import httpx
import pytest

from fanwire.testing.aio import run
from fanwire.testing.assertions import assert_in_order
from fanwire.testing.clients import WSClient

_names = itertools.count(1)
PAYLOAD = "x" * 30_000
BATCH = 20
STALLED = {"receive_buffer": 65536, "max_queue": 1}


@pytest.fixture(scope="module")
def server(fanwire_module_server):
    return fanwire_module_server(env={"FANWIRE_DEMO_RATE": "0"})


async def topic_stats(http, topic):
    return (await http.get("/stats")).json()["topics"][topic]


async def flood(http, topic, healthy, until, limit=400):
    """Publish in batches the healthy client keeps up with, until ``until()`` holds."""
    published = []
    while len(published) < limit:
        for _ in range(BATCH):
            response = await http.post(
                f"/topics/{topic}/messages", json={"data": {"n": len(published), "pad": PAYLOAD}}
            )
            published.append(response.json()["message_id"])
        await healthy.recv_events(len(published), timeout=30)
        if await until():
            return published
    raise AssertionError(f"the stalled client was never cut off after {limit} messages")


def test_disconnect_policy_sends_slow_consumer_then_closes_1008(server):
    topic = f"wslow{os.getpid()}-{next(_names)}"

    async def main():
        async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=30) as http:
            await http.post("/topics", json={"name": topic})
            async with (
                WSClient(server.ws_url) as healthy,
                WSClient(server.ws_url, **STALLED) as slow,
            ):
                await healthy.subscribe(topic)
                await slow.subscribe(topic, policy="disconnect", queue_size=10)
                slow.stall()

                async def cut():
                    return (await topic_stats(http, topic))["subscriber_count"] == 1

                published = await flood(http, topic, healthy, cut)
                slow.resume()
                assert await slow.wait_closed(timeout=30) == 1008
                error = slow.messages[-1]
                assert (error["type"], error["code"]) == ("error", "SLOW_CONSUMER")
                before = slow.event_ids(topic)
                assert 0 < len(before) < len(published)
                async with WSClient(server.ws_url) as again:
                    await again.subscribe(topic, since=before[-1])
                    published.append((await again.publish(topic, "tail"))["message_id"])
                    await again.recv_events(len(published) - len(before), timeout=30)
                    assert_in_order(before + again.sequence(topic), published)
                await healthy.recv_events(len(published), timeout=30)
                assert healthy.event_ids() == published

    run(main(), timeout=120)


def test_drop_oldest_policy_reports_messages_dropped(server):
    topic = f"wdrop{os.getpid()}-{next(_names)}"

    async def main():
        async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=30) as http:
            await http.post("/topics", json={"name": topic})
            async with (
                WSClient(server.ws_url) as healthy,
                WSClient(server.ws_url, **STALLED) as slow,
            ):
                await healthy.subscribe(topic)
                await slow.subscribe(topic, queue_size=10)  # drop_oldest: the WS default
                slow.stall()

                async def dropped():
                    return (await topic_stats(http, topic))["dropped_count"] > 0

                published = await flood(http, topic, healthy, dropped)
                slow.resume()
                await asyncio.sleep(0)
                last = (await healthy.publish(topic, "last"))["message_id"]
                published.append(last)
                await slow.wait_for(lambda c: last in c.event_ids(), timeout=30, what="last")
                notices = slow.infos("messages_dropped")
                assert notices and all(n["topic"] == topic for n in notices)
                assert sum(n["dropped"] for n in notices) == len(published) - len(slow.event_ids())
                assert_in_order(
                    slow.sequence(topic), published, policy="drop_oldest", exact_dropped_counts=True
                )
                assert (await slow.ping())["type"] == "pong"  # still connected
                await healthy.recv_events(len(published), timeout=30)
                assert healthy.event_ids() == published

    run(main(), timeout=120)

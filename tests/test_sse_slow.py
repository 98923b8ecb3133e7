"""Slow SSE consumers (PROTOCOL.md, "Slow consumers"): a client that stops reading.

Under ``disconnect`` the stalled stream is ended and the client resumes from the log by
its last id; under ``drop_oldest`` it is told of the drops with ``event: gap``. Either
way the healthy client beside it gets every message, in order.
"""

import asyncio
import contextlib
import itertools
import os

import httpx
import pytest

from fanwire.testing.aio import run
from fanwire.testing.assertions import assert_in_order
from fanwire.testing.clients import SSEClient

_names = itertools.count(1)
PAYLOAD = "x" * 30_000  # ~12 MB for 400 messages: more than any socket buffer holds
BATCH = 20


@pytest.fixture(scope="module")
def server(fanwire_module_server):
    return fanwire_module_server(env={"FANWIRE_DEMO_RATE": "0"})


def message_ids(client):
    """Message ids only (the ``event: error`` notice of a slow consumer is no message)."""
    return [f.id for f in client.frames if f.is_message]


async def subscribers(http, topic):
    stats = (await http.get("/stats")).json()
    return stats["topics"][topic]["subscriber_count"]


async def flood(http, topic, healthy, until, limit=400):
    """Publish in batches the healthy client keeps up with, until ``until()`` holds."""
    published = []
    while len(published) < limit:
        for _ in range(BATCH):
            response = await http.post(
                f"/topics/{topic}/messages", json={"data": {"n": len(published), "pad": PAYLOAD}}
            )
            published.append(response.json()["message_id"])
        await healthy.read_messages(len(published), timeout=30)
        if await until():
            return published
    raise AssertionError(f"the stalled client was never cut off after {limit} messages")


@contextlib.asynccontextmanager
async def healthy_and_stalled(url, topic):
    """A reading client and a stalled one (``disconnect`` policy, queue of 10) on ``topic``."""
    async with (
        SSEClient(url, topics=[topic]) as healthy,
        SSEClient(
            url,
            topics=[topic],
            receive_buffer=65536,
            stalled=True,
            policy="disconnect",
            queue_size=10,
        ) as slow,
    ):
        await healthy.read_until(lambda c: c.frames)
        yield healthy, slow


async def flood_until_cut(http, topic, healthy):
    """Flood ``topic`` until the server has cut the stalled client off (one subscriber left)."""

    async def cut():
        return await subscribers(http, topic) == 1

    return await flood(http, topic, healthy, cut)


def test_disconnect_policy_ends_the_stalled_stream_and_resume_fills_in(server):
    topic = f"slow{os.getpid()}-{next(_names)}"

    async def main():
        async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=30) as http:
            await http.post("/topics", json={"name": topic})
            async with healthy_and_stalled(server.url, topic) as (healthy, slow):
                published = await flood_until_cut(http, topic, healthy)
                slow.resume()
                await slow.read_to_end(timeout=30)
                errors = slow.of_event("error")
                assert [e.data["code"] for e in errors] == ["SLOW_CONSUMER"]
                assert slow.frames[-1].event == "error"  # the last frame, then the end
                before = message_ids(slow)
                assert len(before) < len(published)
                for i in range(3):
                    published.append(await await_publish(http, topic, i))
                async with SSEClient(server.url, topics=[topic], resume_from=before[-1]) as again:
                    await again.read_messages(len(published) - len(before), timeout=30)
                    assert_in_order(before + again.sequence(), published)
                    assert again.of_event("gap") == []
                await healthy.read_messages(len(published), timeout=30)
                assert healthy.ids == published

    run(main(), timeout=120)


async def await_publish(http, topic, n):
    response = await http.post(f"/topics/{topic}/messages", json={"data": {"tail": n}})
    return response.json()["message_id"]


def test_drop_oldest_policy_announces_gaps_and_keeps_streaming(server):
    topic = f"drop{os.getpid()}-{next(_names)}"

    async def main():
        async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=30) as http:
            await http.post("/topics", json={"name": topic})
            async with (
                SSEClient(server.url, topics=[topic]) as healthy,
                SSEClient(
                    server.url,
                    topics=[topic],
                    receive_buffer=65536,
                    stalled=True,
                    policy="drop_oldest",
                    queue_size=10,
                ) as slow,
            ):
                await healthy.read_until(lambda c: c.frames)

                async def dropped():
                    stats = (await http.get("/stats")).json()
                    return stats["topics"][topic]["dropped_count"] > 0

                published = await flood(http, topic, healthy, dropped)
                slow.resume()
                await asyncio.sleep(0)
                last = await await_publish(http, topic, "last")
                published.append(last)
                await slow.read_until(lambda c: last in c.ids, timeout=30, what="last id")
                gaps = slow.of_event("gap")
                assert gaps and all(g.data["topic"] == topic for g in gaps)
                assert sum(g.data["dropped"] for g in gaps) == len(published) - len(slow.ids)
                assert_in_order(
                    slow.sequence(), published, policy="drop_oldest", exact_dropped_counts=True
                )
                assert await subscribers(http, topic) == 2  # still connected
                await healthy.read_messages(len(published), timeout=30)
                assert healthy.ids == published

    run(main(), timeout=120)


@pytest.mark.parametrize("native", ["1", "0"], ids=["native", "asgi"])
def test_hangs_up_on_a_client_stalled_past_the_grace(fanwire_server, native):
    """On the native writer and without it (other servers, or FANWIRE_NATIVE_SSE=0) a
    stream the core closed but that cannot be flushed within ``close_grace`` is aborted:
    the connection is freed, and uvicorn reports no unfinished response."""
    srv = fanwire_server(
        env={"FANWIRE_DEMO_RATE": "0", "FANWIRE_NATIVE_SSE": native, "FANWIRE_CLOSE_GRACE": "0.3"}
    )
    topic = f"slow{os.getpid()}-{next(_names)}"

    async def main():
        async with httpx.AsyncClient(base_url=srv.url, trust_env=False, timeout=30) as http:
            await http.post("/topics", json={"name": topic})
            async with healthy_and_stalled(srv.url, topic) as (healthy, _):
                published = await flood_until_cut(http, topic, healthy)
                await asyncio.sleep(1.0)  # past the grace
                published.append(await await_publish(http, topic, 0))
                await healthy.read_messages(len(published), timeout=30)
                assert healthy.ids == published
        assert "without completing response" not in srv.log_text()

    run(main(), timeout=120)

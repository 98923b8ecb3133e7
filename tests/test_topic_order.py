"""Several topics on one connection come in id order (PROTOCOL.md: "A stream of several
topics delivers their messages in id order", and the WebSocket "Order on one connection"),
live bursts and replay alike, so a browser resuming from its one Last-Event-ID gets every
message after it, none twice. Against real servers: the native SSE writer with WebSocket
frames (the default), and the ASGI SSE path with one WebSocket text per send."""

import itertools
import os

import httpx
import pytest

from fanwire.testing.aio import run
from fanwire.testing.clients import SSEClient, WSClient

_names = itertools.count(1)
# Interleaved, so that any grouping by topic changes the order.
PATTERN = "babbaabab"


@pytest.fixture(scope="module", params=["native", "asgi"])
def server(request, fanwire_module_server):
    env = {"FANWIRE_DEMO_RATE": "0"}
    if request.param == "asgi":
        env |= {"FANWIRE_NATIVE_SSE": "false", "FANWIRE_WS_BATCH_FRAMES": "false"}
    return fanwire_module_server(env=env)


def new_topics(srv):
    names = []
    for _ in range(2):
        name = f"o{os.getpid()}-{next(_names)}"
        response = httpx.post(srv.url + "/topics", json={"name": name}, trust_env=False)
        assert response.status_code == 201
        names.append(name)
    return names


def key(message_id):
    """An in-memory id "<epoch>-<seq>" as the pair it orders by."""
    epoch, seq = message_id.split("-")
    return int(epoch), int(seq)


async def burst(pub, topics, count):
    """Publish ``count`` messages over ``topics`` (in PATTERN's interleaving) as fast as one
    WebSocket can send them, then wait for every ack; their ids in publish order."""
    a, b = topics
    rids = [f"p{next(_names)}" for _ in range(count)]
    start = len(pub.messages)
    for i, rid in enumerate(rids):
        topic = a if PATTERN[i % len(PATTERN)] == "a" else b
        await pub.send({"type": "publish", "topic": topic, "data": i, "request_id": rid})
    await pub.wait_for(
        lambda c: len([m for m in c.messages[start:] if m.get("type") == "ack"]) >= count,
        what=f"{count} publish acks",
    )
    acks = {m["request_id"]: m for m in pub.messages[start:] if m.get("type") == "ack"}
    return [acks[rid]["message_id"] for rid in rids]


def test_live_bursts_on_two_topics_arrive_in_id_order(server):
    topics = new_topics(server)

    async def main():
        async with (
            SSEClient(server.url, topics=topics) as sse,
            WSClient(server.ws_url) as ws,
            WSClient(server.ws_url) as pub,
        ):
            await sse.read_until(lambda c: c.frames, what="retry")
            for topic in topics:
                await ws.subscribe(topic)
            published = []
            for _ in range(20):  # many bursts: many wake-ups carrying both topics
                published += await burst(pub, topics, 30)
                # Each burst (60) fits the SSE default queue (100, disconnect); 20 bursts
                # unread would not: on a loaded box the ASGI path was cut off as slow.
                want = len(published)
                await sse.read_until(lambda c, n=want: len(c.ids) >= n, what="the burst")
            await ws.recv_events(len(published))
            for got in (sse.ids, ws.event_ids()):
                assert got == sorted(got, key=key), "not in id order"
                assert got == published
            assert sse.of_event("gap") == [] and ws.infos("messages_dropped") == []

    run(main())


def test_last_n_replay_over_two_topics_is_in_id_order(server):
    topics = new_topics(server)

    async def main():
        async with WSClient(server.ws_url) as pub:
            published = await burst(pub, topics, 18)
        topic_of = {
            mid: topics[PATTERN[i % len(PATTERN)] == "b"] for i, mid in enumerate(published)
        }
        last = {t: [mid for mid in published if topic_of[mid] == t][-4:] for t in topics}
        expected = sorted(last[topics[0]] + last[topics[1]], key=key)
        async with SSEClient(server.url, topics=topics, last_n=4) as sse:
            await sse.read_until(lambda c: len(c.ids) >= 8, what="the replay")
            assert sse.ids == expected

    run(main())


def test_resume_from_every_id_of_an_interleaved_history(server):
    topics = new_topics(server)

    async def main():
        async with WSClient(server.ws_url) as pub:
            history = await burst(pub, topics, 12)
        for i, resume_id in enumerate(history[:-1]):
            after = history[i + 1 :]
            async with SSEClient(server.url, topics=topics, resume_from=resume_id) as sse:
                count = len(after)
                await sse.read_until(lambda c: len(c.ids) >= count, what="the replay")  # noqa: B023
                assert sse.ids == after, f"resumed from {resume_id}"
                assert sse.of_event("gap") == []

    run(main())


def test_a_websocket_on_two_topics_gets_a_publish_burst_in_id_order(server):
    """The same over the WebSocket alone, its publisher being itself."""
    topics = new_topics(server)

    async def main():
        async with WSClient(server.ws_url) as ws:
            for topic in topics:
                await ws.subscribe(topic)
            published = []
            for _ in range(10):
                published += await burst(ws, topics, 30)
            await ws.recv_events(len(published))
            assert ws.event_ids() == published

    run(main())

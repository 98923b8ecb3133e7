"""A WebSocket that publishes without waiting for each ack (in memory, and in Redis mode
where its publishes are pipelined to Redis): every reply comes back in request order, an
error in the middle at its place, ids increase, and subscribers get the messages in
that order; a subscribe sent after the publishes is acked after their acks."""

import itertools
import os

import pytest
from redis_support import create_topic, http_client, node

from fanwire.testing.aio import run
from fanwire.testing.clients import SSEClient, WSClient

_names = itertools.count(1)
COUNT = 300


def id_key(message_id):
    hi, lo = message_id.split("-")
    return int(hi), int(lo)


async def publish_stream(srv, topic, http):
    """COUNT publishes sent at once, one bad one and one to a missing topic among them,
    then a subscribe and a ping; the replies in order."""
    async with SSEClient(srv.url, topics=[topic]) as sse, WSClient(srv.ws_url) as ws:
        await sse.read_until(lambda c: c.retry is not None)
        for n in range(COUNT):
            if n == 100:
                await ws.send({"type": "publish", "topic": "a b", "data": 0, "request_id": "bad"})
            if n == 200:
                missing = {"type": "publish", "topic": f"none-{topic}", "data": 0}
                await ws.send({**missing, "request_id": "missing"})
            await ws.send({"type": "publish", "topic": topic, "data": n, "request_id": f"p{n}"})
        await ws.send({"type": "subscribe", "topic": topic, "request_id": "sub"})
        await ws.send({"type": "ping", "request_id": "last"})
        await ws.recv_until(lambda m: m.get("request_id") == "last", timeout=60)
        frames = await sse.read_messages(COUNT, timeout=60)
    replies = [m for m in ws.messages if m.get("request_id") is not None]
    expected = [f"p{n}" for n in range(COUNT)]
    expected[100:100] = ["bad"]
    expected[201:201] = ["missing"]
    assert [m["request_id"] for m in replies] == [*expected, "sub", "last"]
    by_id = {m["request_id"]: m for m in replies}
    assert by_id["bad"]["type"] == "error" and by_id["bad"]["code"] == "INVALID_TOPIC"
    assert by_id["missing"]["type"] == "error" and by_id["missing"]["code"] == "TOPIC_NOT_FOUND"
    assert by_id["sub"]["type"] == "ack" and by_id["last"]["type"] == "pong"
    ids = [by_id[f"p{n}"]["message_id"] for n in range(COUNT)]
    assert sorted(ids, key=id_key) == ids and len(set(ids)) == COUNT
    assert [f.id for f in frames] == ids
    assert [f.data["data"] for f in frames] == list(range(COUNT))


@pytest.fixture(scope="module")
def server(fanwire_module_server):
    # The subscriber must not be cut off as slow while the publisher floods it.
    return fanwire_module_server(env={"FANWIRE_DEMO_RATE": "0", "FANWIRE_SSE_QUEUE_SIZE": "1000"})


def test_publishes_in_a_stream_are_answered_in_order(server):
    topic = f"ps{os.getpid()}-{next(_names)}"

    async def main():
        async with http_client() as http:
            assert (
                await http.post(server.url + "/topics", json={"name": topic})
            ).status_code == 201
            await publish_stream(server, topic, http)

    run(main(), timeout=120)


def test_pipelined_publishes_in_redis_mode_are_answered_in_order(fanwire_server, redis_server):
    srv = node(fanwire_server, redis_server.url, sse_queue_size=1000)
    topic = f"pr{os.getpid()}-{next(_names)}"

    async def main():
        async with http_client() as http:
            await create_topic(http, srv, topic)
            await publish_stream(srv, topic, http)

    run(main(), timeout=120)

"""Idempotent publish (PROTOCOL.md, "Idempotent publish"): HTTP ``Idempotency-Key`` and
WebSocket ``idempotency_key``, on one node and across two Redis nodes."""

from __future__ import annotations

import asyncio
import os
import time

import orjson
import pytest
from redis_support import create_everywhere, http_client, node, topic_name, until

from fanwire.testing.aio import run
from fanwire.testing.clients import SSEClient, WSClient

TOPICS = {"short.*": {"dedupe_window": 1.0}, "nodedupe.*": {"dedupe_window": 0}}
ENV = {
    "FANWIRE_DEMO_RATE": "0",
    "FANWIRE_DEDUPE_MAX_KEYS": "3",
    "FANWIRE_TOPICS": orjson.dumps(TOPICS).decode(),
}


@pytest.fixture(scope="module")
def server(fanwire_module_server):
    return fanwire_module_server(env=ENV)


def _topic(http, prefix="t"):
    name = f"{prefix}{os.getpid()}-{time.monotonic_ns()}"
    assert http.post("/topics", json={"name": name}).status_code == 201
    return name


def _post(http, topic, data, key):
    return http.post(
        f"/topics/{topic}/messages", json={"data": data}, headers={"Idempotency-Key": key}
    )


def test_http_retry_is_published_once_and_answered_with_the_first_id(server, http):
    topic = _topic(http)
    first = _post(http, topic, {"n": 1}, "order-17")
    again = _post(http, topic, {"n": 2}, "order-17")
    assert first.status_code == again.status_code == 202
    assert first.json()["duplicate"] is False
    assert again.json()["duplicate"] is True
    assert again.json()["message_id"] == first.json()["message_id"]
    other = _post(http, topic, {"n": 3}, "order-18")
    assert other.json()["message_id"] != first.json()["message_id"]
    # Keys are per topic: the same key elsewhere is a new publish.
    elsewhere = _post(http, _topic(http), {"n": 4}, "order-17")
    assert elsewhere.json()["duplicate"] is False
    # Without a key the body is unchanged (no "duplicate").
    plain = http.post(f"/topics/{topic}/messages", json={"data": 5}).json()
    assert set(plain) == {"message_id", "subscribers"}
    assert http.get(f"/topics/{topic}").json()["messages"] == 3

    async def main():
        async with SSEClient(server.url, topics=[topic], last_n=10) as sse:
            frames = await sse.read_messages(3)
            assert [f.data["data"] for f in frames] == [{"n": 1}, {"n": 3}, 5]

    run(main())


@pytest.mark.parametrize("key", ["", "k" * 129])
def test_bad_keys_are_refused(http, key):
    response = _post(http, _topic(http), 1, key)
    assert response.status_code == 400
    assert response.json()["error"] == "INVALID_MESSAGE"


def test_a_key_of_128_characters_is_fine(http):
    assert _post(http, _topic(http), 1, "k" * 128).status_code == 202


def test_websocket_retry_is_published_once(server, http):
    topic = _topic(http)

    async def main():
        async with WSClient(server.ws_url) as ws:
            body = {"type": "publish", "topic": topic, "data": 1, "idempotency_key": "a"}
            first = await ws.request(body)
            again = await ws.request({**body, "data": 2})
            assert (first["duplicate"], again["duplicate"]) == (False, True)
            assert again["message_id"] == first["message_id"]
            for bad in (5, "x" * 129, ""):
                reply = await ws.request({**body, "idempotency_key": bad}, check=False)
                assert reply["type"] == "error" and reply["code"] == "INVALID_MESSAGE", reply
            # The same key over HTTP is the same publish.
            over_http = _post(http, topic, 3, "a").json()
            assert over_http == {
                "message_id": first["message_id"],
                "subscribers": 0,
                "duplicate": True,
            }
            plain = await ws.publish(topic, 4)
            assert "duplicate" not in plain
        assert http.get(f"/topics/{topic}").json()["messages"] == 2

    run(main())


def test_after_the_window_or_past_the_key_cap_a_key_is_new(http):
    short = _topic(http, "short.")
    first = _post(http, short, 1, "k").json()
    time.sleep(1.5)  # the window of short.* is 1 s
    later = _post(http, short, 2, "k").json()
    assert later["duplicate"] is False and later["message_id"] != first["message_id"]

    capped = _topic(http)  # at most 3 keys per topic: the oldest goes first
    ids = {key: _post(http, capped, key, key).json()["message_id"] for key in "abcd"}
    assert _post(http, capped, "d", "d").json()["duplicate"] is True
    assert _post(http, capped, "b", "b").json()["message_id"] == ids["b"]
    fresh = _post(http, capped, "a", "a").json()
    assert fresh["duplicate"] is False and fresh["message_id"] != ids["a"]


def test_a_topic_without_a_window_publishes_every_time(http):
    topic = _topic(http, "nodedupe.")
    first, again = (_post(http, topic, 1, "k").json() for _ in range(2))
    assert first["message_id"] != again["message_id"]
    assert again["duplicate"] is False


def test_a_deleted_topic_forgets_its_keys(http):
    topic = _topic(http)
    first = _post(http, topic, 1, "k").json()
    assert http.delete(f"/topics/{topic}").status_code == 204
    http.post("/topics", json={"name": topic})
    again = _post(http, topic, 1, "k").json()
    assert again["duplicate"] is False and again["message_id"] != first["message_id"]


def test_two_redis_nodes_receiving_the_same_retry_publish_once(fanwire_server, redis_server):
    env = {"dedupe_max_keys": 3, "topics": orjson.dumps(TOPICS).decode()}
    a = node(fanwire_server, redis_server.url, **env)
    b = node(fanwire_server, redis_server.url, **env)
    topic, short = topic_name("t"), topic_name("short.")

    async def post(http, srv, name, data, key):
        headers = {"Idempotency-Key": key}
        url = f"{srv.url}/topics/{name}/messages"
        response = await http.post(url, json={"data": data}, headers=headers)
        assert response.status_code == 202, response.text
        return response.json()

    async def main():
        async with http_client() as http:
            await create_everywhere(http, topic, a, b)
            await create_everywhere(http, short, a, b)
            async with SSEClient(b.url, topics=[topic]) as sse, WSClient(a.ws_url) as ws:
                await ws.subscribe(topic)
                for round_ in range(5):  # the same retry reaching both nodes at once
                    key = f"retry-{round_}"
                    answers = await asyncio.gather(
                        post(http, a, topic, round_, key), post(http, b, topic, round_, key)
                    )
                    assert answers[0]["message_id"] == answers[1]["message_id"]
                    assert sorted(x["duplicate"] for x in answers) == [False, True]
                over_ws = await ws.request(
                    {"type": "publish", "topic": topic, "data": 0, "idempotency_key": "retry-4"}
                )
                assert over_ws["duplicate"] is True
                await sse.read_messages(5)
                await ws.recv_events(5, topic=topic)
                await asyncio.sleep(0.5)  # a second copy would have arrived by now
                assert [f.data["data"] for f in sse.messages] == [0, 1, 2, 3, 4]
                assert [e["data"] for e in ws.events] == [0, 1, 2, 3, 4]
            # The key cap (3) and the window hold in Redis too.
            ids = {k: (await post(http, a, topic, k, k))["message_id"] for k in "abcd"}
            assert (await post(http, b, topic, "d", "d"))["message_id"] == ids["d"]
            assert (await post(http, b, topic, "a", "a"))["duplicate"] is False
            first = await post(http, a, short, 1, "k")
            assert (await post(http, b, short, 1, "k"))["duplicate"] is True

            async def expired():
                again = await post(http, b, short, 2, "k")
                return again["duplicate"] is False and again["message_id"] != first["message_id"]

            await asyncio.sleep(1.0)
            await until(expired, timeout=10, what="the key expiring after the 1 s window")

    run(main(), timeout=90)

"""Batch publish, ``POST /topics/{name}/messages {"messages": [...]}`` (PROTOCOL.md,
"Topics over HTTP"), against real servers: in memory and in Redis mode."""

import pytest
from redis_support import create_topic, http_client, node, topic_name

from fanwire.testing.aio import run
from fanwire.testing.clients import SSEClient, WSClient


@pytest.fixture(scope="module")
def server(fanwire_module_server):
    return fanwire_module_server(env={"FANWIRE_DEMO_RATE": "0", "FANWIRE_MAX_PAYLOAD": "1000"})


def messages_of(http, topic):
    return {t["name"]: t["messages"] for t in http.get("/topics").json()["topics"]}[topic]


def test_batch_is_published_in_order_with_its_ids(server, http, topic):
    batch = [{"data": {"n": n}} for n in range(5)] + [{"data": "last", "event": "done"}]

    async def main():
        async with SSEClient(server.url, topics=[topic]) as sse, WSClient(server.ws_url) as ws:
            await ws.subscribe(topic)
            await sse.read_until(lambda c: c.retry is not None)
            response = http.post(f"/topics/{topic}/messages", json={"messages": batch})
            assert response.status_code == 202, response.text
            body = response.json()
            assert set(body) == {"message_ids", "subscribers"}
            assert body["subscribers"] == 2
            ids = body["message_ids"]
            assert len(ids) == len(set(ids)) == 6
            frames = await sse.read_messages(6)
            await ws.recv_events(6)
            assert [f.id for f in frames] == ids
            assert [f.data["data"] for f in frames] == [{"n": n} for n in range(5)] + ["last"]
            assert [f.event for f in frames] == ["message"] * 5 + ["done"]
            assert ws.event_ids() == ids
            return ids

    ids = run(main())
    # A single publish after the batch comes after all of it.
    after = http.post(f"/topics/{topic}/messages", json={"data": 7}).json()["message_id"]

    async def resume():
        async with SSEClient(server.url, topics=[topic], resume_from=ids[2]) as sse:
            frames = await sse.read_messages(4)
            assert [f.id for f in frames] == [*ids[3:], after]

    run(resume())
    assert messages_of(http, topic) == 7


@pytest.mark.parametrize(
    ("messages", "status"),
    [
        ([{"data": 1}, {"data": 2, "event": "a b"}], 400),  # a bad event name
        ([{"data": 1}, {"event": "x"}], 400),  # no data
        ([{"data": 1}, 5], 400),  # not an object
        ([{"data": 1}, {"data": 2, "event": 7}], 400),
        ([{"data": 1}, {"data": 2, "event": "heartbeat"}], 400),  # a reserved event
        ([], 400),
        ([{"data": 1}, {"data": "x" * 1000}], 413),  # one message over max_payload
        ([{"data": n} for n in range(1001)], 413),  # more than a batch may hold
    ],
)
def test_a_bad_message_refuses_the_whole_batch(http, topic, messages, status):
    response = http.post(f"/topics/{topic}/messages", json={"messages": messages})
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "message"}
    assert messages_of(http, topic) == 0


@pytest.mark.parametrize(
    "body",
    [{"messages": {"data": 1}}, {"messages": [{"data": 1}], "data": 2}, {"messages": None}],
)
def test_batch_bodies_of_the_wrong_shape_are_400(http, topic, body):
    response = http.post(f"/topics/{topic}/messages", json=body)
    assert response.status_code == 400, response.text
    assert messages_of(http, topic) == 0


def test_batch_to_an_unknown_topic_is_404(http):
    response = http.post("/topics/no-such-batch/messages", json={"messages": [{"data": 1}]})
    assert response.status_code == 404
    assert response.json()["error"] == "TOPIC_NOT_FOUND"


TEXTS = ["", "x" * 3000, "é ü 漢字 🎉", "a", 'line\nbreak \\ "q"']
EVENTS = ["", "tick", "", "tock", "tick"]


def test_batch_in_redis_mode(fanwire_server, redis_server):
    srv = node(fanwire_server, redis_server.url)
    topic = topic_name("rb")

    async def main():
        async with http_client() as client:
            await create_topic(client, srv, topic)
            first = await client.post(f"{srv.url}/topics/{topic}/messages", json={"data": 0})
            first_id = first.json()["message_id"]
            async with SSEClient(srv.url, topics=[topic]) as sse:
                await sse.read_until(lambda c: c.retry is not None)
                # Sizes, characters and event types differ per message: the batch goes
                # to Redis as packed columns, and each must come back whole and paired.
                messages = [{"data": {"n": n, "s": text}} for n, text in enumerate(TEXTS, 1)]
                for message, event in zip(messages, EVENTS, strict=True):
                    if event:
                        message["event"] = event
                batch = {"messages": messages}
                response = await client.post(f"{srv.url}/topics/{topic}/messages", json=batch)
                assert response.status_code == 202, response.text
                ids = response.json()["message_ids"]
                assert response.json()["subscribers"] == 1
                keys = [tuple(int(part) for part in i.split("-")) for i in [first_id, *ids]]
                assert sorted(set(keys)) == keys  # every id above the one before
                frames = await sse.read_messages(5)
                assert [f.id for f in frames] == ids
                assert [f.data["data"]["n"] for f in frames] == [1, 2, 3, 4, 5]
                assert [f.data["data"]["s"] for f in frames] == TEXTS
                assert [f.event for f in frames] == [e or "message" for e in EVENTS]
            # Resume from the message before the batch: all of it, in order, from Redis.
            async with SSEClient(srv.url, topics=[topic], resume_from=first_id) as sse:
                frames = await sse.read_messages(5)
                assert [f.id for f in frames] == ids
                assert [f.data["data"]["s"] for f in frames] == TEXTS
                assert [f.event for f in frames] == [e or "message" for e in EVENTS]
            missing = await client.post(
                f"{srv.url}/topics/none-{topic}/messages", json={"messages": [{"data": 1}]}
            )
            assert missing.status_code == 404
            bad = await client.post(
                f"{srv.url}/topics/{topic}/messages",
                json={"messages": [{"data": 1}, {"data": 2, "event": "a b"}]},
            )
            assert bad.status_code == 400
            rows = (await client.get(f"{srv.url}/topics")).json()["topics"]
            assert {t["name"]: t["messages"] for t in rows}[topic] == 6

    run(main(), timeout=60)

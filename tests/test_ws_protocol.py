"""WebSocket ``/ws`` (PROTOCOL.md, "WebSocket") against a real server.

Every test runs once per row of the server matrix (fanwire.testing.matrix.SERVINGS,
docs/testing.md), and again with a client that negotiates permessage-deflate
(``-deflate`` rows): ``-k uvicorn-httptools-native`` picks the default row.
"""

import asyncio
import itertools
import os

import httpx
import orjson
import pytest
from matrix_support import create_topic, publish, serving_fixture

from fanwire.testing.aio import run
from fanwire.testing.assertions import assert_in_order
from fanwire.testing.matrix import SERVINGS

_names = itertools.count(1)
RETENTION = 50


ROWS = [row for serving in SERVINGS for row in (serving, serving.with_deflate())]


serving = serving_fixture(ROWS)


@pytest.fixture(scope="module")
def server(fanwire_module_server, serving):
    env = {
        "FANWIRE_DEMO_RATE": "0",
        "FANWIRE_RETENTION": str(RETENTION),
        "FANWIRE_MAX_SUBSCRIPTIONS_PER_CONNECTION": "3",
        "FANWIRE_WS_PUBLISH_RATE": "50",
        "FANWIRE_MAX_PAYLOAD": "1000",
    }
    srv = fanwire_module_server(env=env, serving=serving)
    yield srv
    srv.stop()  # now, not at the module's end: the next row starts its own


def new_topic(srv):
    return create_topic(srv, f"w{os.getpid()}-{next(_names)}")


def test_connected_info_and_ping(server):
    async def main():
        async with server.ws_client() as ws:
            hello = ws.messages[0]
            assert hello["type"] == "info" and hello["message"] == "connected"
            assert isinstance(hello["client_id"], str) and hello["client_id"]
            pong = await ws.ping(request_id="p-1")
            assert {k: v for k, v in pong.items() if k != "_received_at"} == {
                "type": "pong",
                "request_id": "p-1",
            }
        async with server.ws_client() as other:
            assert other.client_id != hello["client_id"]

    run(main())


def test_permessage_deflate_as_negotiated(server, serving):
    """The ``-deflate`` rows' client offers permessage-deflate: every server accepts it
    but granian (a documented exception, see fanwire.testing.matrix), which declines it;
    either way events, replies and batched frames arrive whole."""
    topic = new_topic(server)

    async def main():
        async with server.ws_client() as ws:
            expected = ["permessage-deflate"] if serving.negotiates_deflate else []
            assert ws.extensions == expected
            await ws.subscribe(topic)
            sent = [publish(server, topic, {"n": i, "pad": "z" * 200}) for i in range(30)]
            await ws.recv_events(30)
            assert ws.event_ids() == sent
            assert (await ws.ping())["type"] == "pong"

    run(main())


def test_subscribe_ack_comes_before_replayed_and_live_events(server):
    topic = new_topic(server)
    old = [publish(server, topic, i) for i in range(10)]

    async def main():
        async with server.ws_client() as ws:
            ack = await ws.subscribe(topic, last_n=4, request_id="sub-1")
            assert ack["type"] == "ack" and ack["request_type"] == "subscribe"
            assert ack["topic"] == topic and ack["request_id"] == "sub-1"
            assert isinstance(ack["message"], str)
            live = [publish(server, topic, i) for i in range(10, 13)]
            await ws.recv_events(7)
            kinds = [m["type"] for m in ws.messages]
            assert kinds.index("ack") < kinds.index("event")
            assert ws.event_ids() == old[6:] + live

    run(main())


def test_ack_before_events_under_a_busy_topic(server):
    """Subscribing while a topic is being fed: the ack is still first."""
    topic = new_topic(server)

    async def main():
        async with server.ws_client() as publisher, server.ws_client() as ws:
            for i in range(20):
                await publisher.send({"type": "publish", "topic": topic, "data": i})
            await ws.send({"type": "subscribe", "topic": topic, "last_n": 20, "request_id": "s"})
            for i in range(20, 40):
                await publisher.send({"type": "publish", "topic": topic, "data": i})
            await ws.recv_until(lambda m: m.get("type") == "ack")
            await publisher.recv_until(
                lambda m: (
                    m.get("type") == "ack"
                    and m["message_id"]
                    and len(publisher.of_type("ack")) == 40
                ),
                timeout=10,
            )
            sent = [m["message_id"] for m in publisher.of_type("ack")]
            await ws.wait_for(lambda c: sent[-1] in c.event_ids(), what="last event")
            kinds = [m["type"] for m in ws.messages[1:]]
            assert kinds[0] == "ack"
            ids = ws.event_ids()
            assert len(ids) >= 20  # 20 replayed, then every live one: no dup, no gap
            assert ids == sent[-len(ids) :]

    run(main())


def test_publish_ack_and_event_shape(server):
    topic = new_topic(server)

    async def main():
        async with server.ws_client() as ws:
            await ws.subscribe(topic)
            plain = await ws.publish(topic, {"qty": 3}, request_id="pub-1")
            typed = await ws.publish(topic, [1, 2], event="tick")
            assert plain["request_type"] == "publish" and plain["request_id"] == "pub-1"
            assert plain["topic"] == topic and isinstance(plain["message_id"], str)
            events = await ws.recv_events(2)
            first, second = ({k: v for k, v in e.items() if k != "_received_at"} for e in events)
            assert set(first) == {"type", "topic", "message_id", "data", "ts"}
            assert first["message_id"] == plain["message_id"] and first["data"] == {"qty": 3}
            assert isinstance(first["ts"], float)
            assert second["event"] == "tick" and second["message_id"] == typed["message_id"]

    run(main())


def test_each_publish_ack_comes_before_its_own_event(server):
    """A client subscribed to the topic it publishes to learns each message id from the
    ack before the event arrives (no unacknowledged id in its stream), also when it sends
    a burst of publishes without waiting: where the core owns the socket, the event
    reaches the connection's stream as soon as the core has it, before Python queued
    the ack (fails without WsSink.hold on the ws-handoff row)."""
    topic = new_topic(server)
    burst = 40  # under the server's publish budget (FANWIRE_WS_PUBLISH_RATE 50)

    async def main():
        async with server.ws_client() as ws:
            await ws.subscribe(topic)
            for n in range(burst):
                await ws.send({"type": "publish", "topic": topic, "data": n, "request_id": f"b{n}"})
            await ws.recv_events(burst)
            seen: set[str] = set()
            for message in ws.messages:
                if message.get("type") == "ack" and message.get("request_type") == "publish":
                    seen.add(message["message_id"])
                elif message.get("type") == "event":
                    assert message["message_id"] in seen, f"event {message['data']} before its ack"

    run(main())


def test_unsubscribe_and_not_subscribed(server):
    topic = new_topic(server)

    async def main():
        async with server.ws_client() as ws:
            await ws.subscribe(topic)
            ack = await ws.unsubscribe(topic, request_id="u1")
            assert (ack["request_type"], ack["topic"], ack["request_id"]) == (
                "unsubscribe",
                topic,
                "u1",
            )
            error = await ws.unsubscribe(topic, request_id="u2", check=False)
            assert (error["type"], error["code"], error["request_id"]) == (
                "error",
                "NOT_SUBSCRIBED",
                "u2",
            )
            publish(server, topic, "unseen")
            await ws.ping()
            assert ws.events == []

    run(main())


def test_since_resumes_without_dup_or_gap_and_stale_ids_get_a_gap(server):
    topic = new_topic(server)
    published = [publish(server, topic, i) for i in range(6)]

    async def main():
        async with server.ws_client() as ws:
            await ws.subscribe(topic, since=published[2])
            published.append(publish(server, topic, 6))
            await ws.recv_events(4)
            assert ws.event_ids() == published[3:]
        async with server.ws_client() as ws:
            await ws.subscribe(topic, since="garbage")
            await ws.recv_events(7)
            gap = ws.infos("gap")
            assert [{k: g[k] for k in ("topic", "first_available")} for g in gap] == [
                {"topic": topic, "first_available": published[0]}
            ]
            assert_in_order(ws.sequence(topic), published)

    run(main())


BAD = [
    (b"{not json", "INVALID_JSON"),
    (b"", "INVALID_JSON"),
    (b"[1, 2]", "INVALID_MESSAGE"),
    (b'"subscribe"', "INVALID_MESSAGE"),
    (b"{}", "INVALID_MESSAGE"),
    (b'{"type": "dance"}', "INVALID_MESSAGE"),
    (b'{"type": 5}', "INVALID_MESSAGE"),
    (b'{"type": "subscribe"}', "INVALID_MESSAGE"),
    (b'{"type": "subscribe", "topic": 5}', "INVALID_MESSAGE"),
    (b'{"type": "subscribe", "topic": "T", "last_n": "3"}', "INVALID_MESSAGE"),
    (b'{"type": "subscribe", "topic": "T", "last_n": true}', "INVALID_MESSAGE"),
    (b'{"type": "subscribe", "topic": "T", "last_n": -1}', "INVALID_MESSAGE"),
    (b'{"type": "subscribe", "topic": "T", "last_n": 51}', "INVALID_MESSAGE"),
    (b'{"type": "subscribe", "topic": "T", "last_n": 1e300}', "INVALID_MESSAGE"),
    (b'{"type": "subscribe", "topic": "T", "last_n": 99999999999999999999}', "INVALID_MESSAGE"),
    (b'{"type": "subscribe", "topic": "T", "since": 7}', "INVALID_MESSAGE"),
    (b'{"type": "subscribe", "topic": "T", "policy": "block"}', "INVALID_MESSAGE"),
    (b'{"type": "subscribe", "topic": "T", "queue_size": 0}', "INVALID_MESSAGE"),
    (b'{"type": "subscribe", "topic": "a b"}', "INVALID_TOPIC"),
    (b'{"type": "subscribe", "topic": "a\\r\\nb"}', "INVALID_TOPIC"),
    (b'{"type": "subscribe", "topic": ""}', "INVALID_TOPIC"),
    (b'{"type": "subscribe", "topic": "' + b"x" * 10_000 + b'"}', "INVALID_TOPIC"),
    (b'{"type": "subscribe", "topic": "missing-topic"}', "TOPIC_NOT_FOUND"),
    (b'{"type": "unsubscribe", "topic": "T"}', "NOT_SUBSCRIBED"),
    (b'{"type": "unsubscribe", "topic": "a\\nb"}', "INVALID_TOPIC"),
    (b'{"type": "publish", "topic": "T"}', "INVALID_MESSAGE"),
    (b'{"type": "publish", "topic": "T", "data": 1, "event": 3}', "INVALID_MESSAGE"),
    (b'{"type": "publish", "topic": "T", "data": 1, "event": "a\\nb"}', "INVALID_MESSAGE"),
    (b'{"type": "publish", "topic": "missing-topic", "data": 1}', "TOPIC_NOT_FOUND"),
    (b'{"type": "publish", "topic": "T", "data": "' + b"z" * 2000 + b'"}', "PAYLOAD_TOO_LARGE"),
    (b'{"type": "ping", "request_id": 12}', "INVALID_MESSAGE"),
    (b"[" * 5000 + b"]" * 5000, "INVALID_JSON"),
]


@pytest.mark.parametrize("raw, code", BAD, ids=[c + str(i) for i, (_, c) in enumerate(BAD)])
def test_bad_messages_get_an_error_and_the_connection_stays_open(server, raw, code):
    topic = new_topic(server)
    raw = raw.replace(b'"T"', orjson.dumps(topic))

    async def main():
        async with server.ws_client() as ws:
            await ws.send_raw(raw.decode())
            error = await ws.recv_until(type="error")
            assert error["code"] == code, error
            assert isinstance(error["message"], str)
            await ws.send_raw(raw)  # the same as a binary message
            second = await ws.recv_until(type="error", start=2)
            assert second["code"] == code
            assert (await ws.ping())["type"] == "pong"
            await ws.subscribe(topic)
            mid = publish(server, topic, "after")
            await ws.recv_events(1)
            assert ws.event_ids() == [mid]
            assert not ws.closed

    run(main())


def test_request_id_is_echoed_on_errors(server):
    async def main():
        async with server.ws_client() as ws:
            reply = await ws.request(
                {"type": "subscribe", "topic": "??", "request_id": "x"}, check=False
            )
            assert (reply["code"], reply["request_id"]) == ("INVALID_TOPIC", "x")
            reply = await ws.request({"type": "nope", "request_id": "y"}, check=False)
            assert (reply["code"], reply["request_id"]) == ("INVALID_MESSAGE", "y")

    run(main())


def test_subscription_limit_per_connection(server):
    topics = [new_topic(server) for _ in range(4)]

    async def main():
        async with server.ws_client() as ws:
            for topic in topics[:3]:
                await ws.subscribe(topic)
            await ws.subscribe(topics[0])  # re-subscribing is not one more
            reply = await ws.subscribe(topics[3], check=False)
            assert reply["code"] == "LIMIT_REACHED"
            await ws.unsubscribe(topics[0])
            await ws.subscribe(topics[3])

    run(main())


def test_publish_rate_limit(server):
    topic = new_topic(server)

    async def main():
        async with server.ws_client() as ws:
            for i in range(120):
                await ws.send({"type": "publish", "topic": topic, "data": i, "request_id": str(i)})
            await ws.wait_for(lambda c: len(c.of_type("ack")) + len(c.of_type("error")) >= 120)
            codes = {m["code"] for m in ws.of_type("error")}
            assert codes == {"RATE_LIMITED"}
            assert (await ws.ping())["type"] == "pong"

    run(main())


def test_topic_deleted_info(server):
    topic = new_topic(server)

    async def main():
        async with server.ws_client() as ws:
            await ws.subscribe(topic)
            deleted = httpx.delete(
                f"{server.url}/topics/{topic}", verify=server.verify, trust_env=False
            )
            assert deleted.status_code == 204
            info = await ws.recv_until(lambda m: m.get("message") == "topic_deleted")
            assert info["type"] == "info" and info["topic"] == topic
            reply = await ws.unsubscribe(topic, check=False)
            assert reply["code"] == "NOT_SUBSCRIBED"
            assert not ws.closed

    run(main())


def test_heartbeat_and_connection_limit(fanwire_server, serving):
    srv = fanwire_server(
        env={"FANWIRE_DEMO_RATE": "0", "FANWIRE_MAX_CONNECTIONS": "1"}, serving=serving
    )

    async def main():
        async with srv.ws_client(params={"heartbeat": "0.2"}) as ws:
            beat = await ws.recv_until(lambda m: m.get("message") == "heartbeat")
            assert beat["type"] == "info" and isinstance(beat["ts"], float)
            with pytest.raises(Exception) as refused:
                await srv.ws_client().connect()
            assert "503" in str(refused.value)

    run(main())


def test_heartbeats_only_while_idle(fanwire_server, serving):
    """Events written straight from the wake-up round count as traffic: no heartbeat
    while they flow faster than the interval, heartbeats again once the topic is quiet."""
    srv = fanwire_server(env={"FANWIRE_DEMO_RATE": "0"}, serving=serving)
    topic = new_topic(srv)

    async def main():
        async with srv.ws_client(params={"heartbeat": "0.4"}) as ws, srv.ws_client() as publisher:
            await ws.subscribe(topic)
            for i in range(25):  # 2.5 s of events, one every 0.1 s
                await publisher.publish(topic, i)
                await asyncio.sleep(0.1)
            events = await ws.recv_events(25, topic=topic)
            first, last = ws.messages.index(events[0]), ws.messages.index(events[-1])
            during = [m for m in ws.messages[first:last] if m.get("message") == "heartbeat"]
            assert during == [], "heartbeat sent while events were flowing"
            beat = await ws.recv_until(lambda m: m.get("message") == "heartbeat", start=last)
            assert beat["_received_at"] - events[-1]["_received_at"] >= 0.3

    run(main())

"""Two fanwire nodes (separate processes and ports) sharing one real Redis."""

import asyncio

from redis_support import (
    by_stream_order,
    create_everywhere,
    create_topic,
    http_client,
    node,
    publish,
    topic_name,
    two_nodes,
    wait_topic,
)

from fanwire.testing.aio import run
from fanwire.testing.assertions import assert_in_order
from fanwire.testing.clients import SSEClient, WSClient
from fanwire.testing.gaps import Gap


def test_publish_on_a_reaches_sse_and_ws_clients_on_b_in_order(fanwire_server, redis_server):
    a, b, topic = two_nodes(fanwire_server, redis_server.url)

    async def main():
        async with http_client() as http:
            await create_everywhere(http, topic, a, b)
            async with SSEClient(b.url, topics=[topic]) as sse, WSClient(b.ws_url) as ws:
                await ws.subscribe(topic)
                ids = [await publish(http, a, topic, {"n": n}) for n in range(15)]
                async with WSClient(a.ws_url) as pub:
                    for n in range(15, 20):
                        ids.append((await pub.publish(topic, {"n": n}, event="tick"))["message_id"])
                await sse.read_messages(20)
                await ws.recv_events(20, topic=topic)
        assert_in_order(sse.sequence(topic), ids)
        assert_in_order(ws.sequence(topic), ids)
        assert [f.data["data"]["n"] for f in sse.messages] == list(range(20))
        assert [f.event for f in sse.messages] == ["message"] * 15 + ["tick"] * 5
        assert [e["data"]["n"] for e in ws.events] == list(range(20))

    run(main(), timeout=60)


def test_three_publishers_on_two_nodes_every_client_gets_everything(fanwire_server, redis_server):
    a = node(fanwire_server, redis_server.url)
    b = node(fanwire_server, redis_server.url)
    topics = [topic_name("x"), topic_name("y")]
    per_publisher = 30

    async def rest_publisher(http, srv, tag):
        ids = {t: [] for t in topics}
        for n in range(per_publisher):
            topic = topics[n % 2]
            ids[topic].append(await publish(http, srv, topic, {"from": tag, "n": n}))
        return ids

    async def ws_publisher(srv, tag):
        ids = {t: [] for t in topics}
        async with WSClient(srv.ws_url) as ws:
            for n in range(per_publisher):
                topic = topics[n % 2]
                ack = await ws.publish(topic, {"from": tag, "n": n})
                ids[topic].append(ack["message_id"])
        return ids

    async def main():
        async with http_client() as http:
            for topic in topics:
                await create_everywhere(http, topic, a, b)
            sse = [SSEClient(s.url, topics=topics) for s in (a, b)]
            ws = [WSClient(s.ws_url) for s in (a, b)]
            for client in (*sse, *ws):
                await client.connect()
            for client in ws:
                for topic in topics:
                    await client.subscribe(topic)
            results = await asyncio.gather(
                rest_publisher(http, a, "rest-a"),
                rest_publisher(http, b, "rest-b"),
                ws_publisher(a, "ws-a"),
            )
            published = {t: by_stream_order(i for r in results for i in r[t]) for t in topics}
            total = sum(len(v) for v in published.values())
            assert total == 3 * per_publisher
            for client in sse:
                await client.read_messages(total, timeout=20)
            for client in ws:
                await client.recv_events(total, timeout=20)
            for client in (*sse, *ws):
                for topic in topics:
                    sequence = client.sequence(topic)
                    assert not [g for g in sequence if isinstance(g, Gap)]
                    assert_in_order(sequence, published[topic])
                await client.close()

    run(main(), timeout=90)


def test_topics_created_and_deleted_on_one_node_are_known_on_the_other(
    fanwire_server, redis_server
):
    a, b, topic = two_nodes(fanwire_server, redis_server.url)

    async def main():
        async with http_client() as http:
            await create_topic(http, a, topic)
            again = await http.post(b.url + "/topics", json={"name": topic})
            assert again.json() == {"name": topic, "created": False}
            async with SSEClient(b.url, topics=[topic]) as sse:
                await publish(http, a, topic, {"n": 1})
                await sse.read_messages(1)
                deleted = await http.delete(f"{a.url}/topics/{topic}")
                assert deleted.status_code == 204
                frame = await sse.read_until_event("topic_deleted")
                assert frame.data == {"topic": topic}
                await sse.read_to_end()
            gone = await http.post(f"{b.url}/topics/{topic}/messages", json={"data": 1})
            assert gone.status_code == 404
            assert (await http.delete(f"{b.url}/topics/{topic}")).status_code == 404

    run(main(), timeout=60)


def test_demo_producer_of_one_node_feeds_the_clients_of_another(fanwire_server, redis_server):
    a = node(fanwire_server, redis_server.url, demo_rate=20)
    b = node(fanwire_server, redis_server.url)

    async def main():
        async with http_client() as http:
            await wait_topic(http, b, "events")
            async with SSEClient(b.url) as sse:  # the default topic: events
                await sse.read_messages(5)
        assert {f.topic for f in sse.messages} == {"events"}
        assert_in_order(sse.ids, by_stream_order(sse.ids))

    run(main(), timeout=60)
    assert "Traceback" not in a.log_text()

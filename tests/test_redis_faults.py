"""Redis faults: unreachable at start, and stopped then restarted under live clients."""

from redis_support import (
    create_everywhere,
    create_topic,
    http_client,
    node,
    publish,
    topic_name,
    two_nodes,
    until,
)

from fanwire.testing.aio import run
from fanwire.testing.assertions import assert_in_order
from fanwire.testing.clients import SSEClient, WSClient
from fanwire.testing.gaps import Gap


async def status_of_publish(http, srv, topic, data):
    response = await http.post(f"{srv.url}/topics/{topic}/messages", json={"data": data})
    return response.status_code, response


async def publish_once_back(http, srv, topic, data):
    """Publish as soon as Redis is usable again: only 503 is acceptable meanwhile."""

    async def attempt():
        status, response = await status_of_publish(http, srv, topic, data)
        assert status in (202, 503), response.text
        return response.json()["message_id"] if status == 202 else None

    return await until(attempt, timeout=30, what="publishing after Redis came back")


def test_redis_unreachable_at_start_then_reachable(fanwire_server, redis_server):
    redis_server.stop()
    a = node(fanwire_server, redis_server.url)
    topic = topic_name()

    async def main():
        async with http_client() as http:
            created = await http.post(a.url + "/topics", json={"name": topic})
            assert created.status_code == 503, created.text
            assert created.json()["error"] == "INTERNAL"
            assert (await status_of_publish(http, a, topic, 1))[0] == 503
            redis_server.restart()
            await create_topic(http, a, topic)
            async with SSEClient(a.url, topics=[topic]) as sse:
                message_id = await publish(http, a, topic, {"n": 1})
                await sse.read_messages(1)
            assert sse.ids == [message_id]

    run(main(), timeout=60)
    assert "is unavailable" in a.log_text()
    assert "connected to Redis" in a.log_text()


def test_redis_stopped_and_restarted_mid_stream(fanwire_server, redis_server):
    a, b, topic = two_nodes(fanwire_server, redis_server.url)

    async def main():
        async with http_client() as http:
            await create_everywhere(http, topic, a, b)
            sse = [SSEClient(s.url, topics=[topic]) for s in (a, b)]
            ws = WSClient(b.ws_url, params={"heartbeat": "0.5"})  # heartbeats on request
            for client in (*sse, ws):
                await client.connect()
            await ws.subscribe(topic)
            ids = [await publish(http, a, topic, {"n": n}) for n in range(5)]
            for client in sse:
                await client.read_messages(5)
            await ws.recv_events(5, topic=topic)

            redis_server.stop()
            for srv in (a, b):
                status, response = await status_of_publish(http, srv, topic, "lost?")
                assert status == 503, response.text
            refused = await ws.publish(topic, "lost?", check=False)
            assert (refused["type"], refused["code"]) == ("error", "INTERNAL")
            for client in sse:  # still connected: heartbeats go on during the outage
                await client.read_until_event("heartbeat", start=len(client.frames))
            await ws.recv_until(lambda m: m.get("message") == "heartbeat", start=len(ws.messages))

            redis_server.restart()
            ids.append(await publish_once_back(http, a, topic, {"n": 5}))
            ids.append(await publish_once_back(http, b, topic, {"n": 6}))
            ids += [await publish(http, a, topic, {"n": n}) for n in range(7, 10)]
            for client in sse:
                await client.read_messages(10)
            await ws.recv_events(10, topic=topic)
            for sequence in [c.sequence(topic) for c in sse] + [ws.sequence(topic)]:
                assert_in_order(sequence, ids)
                # Redis came back empty: what it held after the last id read is lost.
                gap = sequence[5]
                assert isinstance(gap, Gap) and gap.kind == "resume", sequence
            assert not any(c.ended for c in sse) and not ws.closed
            for client in (*sse, ws):
                await client.close()

    run(main(), timeout=120)
    for srv in (a, b):
        assert "Traceback" not in srv.log_text()
        assert "Redis at" in srv.log_text() and "is back" in srv.log_text()

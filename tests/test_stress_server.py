"""Stress: 200 SSE + 200 WebSocket clients on 5 topics, 5 concurrent publishers, and two
stalled clients whose sockets are full. Every other client gets every message of every
topic, in publish order, with no gap and no duplicate (behaviour only, no timing)."""

import asyncio

import httpx

from fanwire.testing.aio import run
from fanwire.testing.clients import SSEClient, WSClient

TOPICS = [f"stress{i}" for i in range(5)]
PER_TOPIC = 40
SSE_CLIENTS = 200
WS_CLIENTS = 200
PAD = "p" * 200


async def publisher(url, topic):
    """One publisher per topic: its ack order is the topic's publish order."""
    async with WSClient(url) as ws:
        ids = []
        for n in range(PER_TOPIC):
            ack = await ws.publish(topic, {"n": n, "pad": PAD})
            ids.append(ack["message_id"])
            if n % 10 == 0:
                await asyncio.sleep(0.01)
        return ids


async def jam(http, stalled_sse, stalled_ws):
    """Fill the stalled clients' sockets so the server cannot write to them."""
    await stalled_ws.subscribe("flood", queue_size=10)
    stalled_ws.stall()
    for n in range(170):  # ~5 MB
        await http.post("/topics/flood/messages", json={"data": {"n": n, "pad": "f" * 30_000}})


async def connect_all(url, ws_url):
    sse = [SSEClient(url, topics=TOPICS) for _ in range(SSE_CLIENTS)]
    ws = [WSClient(ws_url) for _ in range(WS_CLIENTS)]
    await asyncio.gather(*(c.connect() for c in sse + ws))
    await asyncio.gather(*(c.subscribe(t) for c in ws for t in TOPICS))
    await asyncio.gather(*(c.read_until(lambda s: s.frames, timeout=60) for c in sse))
    return sse, ws


def sse_complete(client):
    return len(client.messages) >= len(TOPICS) * PER_TOPIC


def ws_complete(client):
    return len(client.events) >= len(TOPICS) * PER_TOPIC


def test_every_client_gets_every_message_in_order_despite_stalled_ones(fanwire_server):
    srv = fanwire_server(env={"FANWIRE_DEMO_RATE": "0"})

    async def main():
        async with httpx.AsyncClient(base_url=srv.url, trust_env=False, timeout=30) as http:
            for topic in [*TOPICS, "flood"]:
                await http.post("/topics", json={"name": topic})
            stalled_sse = await SSEClient(
                srv.url,
                topics=[*TOPICS, "flood"],
                stalled=True,
                receive_buffer=4096,
                policy="drop_oldest",
                queue_size=10,
            ).connect()
            stalled_ws = await WSClient(srv.ws_url, receive_buffer=4096, max_queue=1).connect()
            for topic in TOPICS:
                await stalled_ws.subscribe(topic)
            await jam(http, stalled_sse, stalled_ws)
            flood = (await http.get("/stats")).json()["topics"]["flood"]
            assert flood["dropped_count"] > 0  # the stalled sockets are full indeed
            sse, ws = await connect_all(srv.url, srv.ws_url)
            published = await asyncio.gather(*(publisher(srv.ws_url, t) for t in TOPICS))
            expected = dict(zip(TOPICS, published, strict=True))
            await asyncio.gather(
                *(c.read_until(sse_complete, timeout=120) for c in sse),
                *(c.wait_for(ws_complete, timeout=120) for c in ws),
            )
            for client in sse:
                for topic in TOPICS:
                    assert [f.id for f in client.messages if f.topic == topic] == expected[topic]
            for client in ws:
                for topic in TOPICS:
                    assert client.event_ids(topic) == expected[topic]
            stats = (await http.get("/stats")).json()
            assert stats["connections"]["sse"] == SSE_CLIENTS + 1  # the stalled one too
            assert stats["connections"]["ws"] == WS_CLIENTS + 1
            await asyncio.gather(*(c.close() for c in [*sse, *ws, stalled_sse, stalled_ws]))

    run(main(), timeout=300)

"""``python -m fanwire --workers 2 --redis URL``: two worker processes behind one port."""

import asyncio

from redis_support import (
    NODE_ENV,
    create_topic,
    http_client,
    knows_topic,
    publish,
    topic_name,
    wait_topic,
)

from fanwire.testing.aio import run
from fanwire.testing.assertions import assert_in_order
from fanwire.testing.clients import SSEClient, WSClient


def worker_pids(srv):
    """Pids of the worker processes of ``srv`` (children of its parent process)."""
    with open(f"/proc/{srv.pid}/task/{srv.pid}/children") as children:
        return [int(pid) for pid in children.read().split()]


async def known_by_every_worker(srv, topic, in_a_row=12):
    """Each request is a new connection, so consecutive answers come from both workers."""
    for _ in range(in_a_row):
        async with http_client() as fresh:
            if not await knows_topic(fresh, srv, topic):
                return False
    return True


def test_two_workers_share_one_port_and_every_client_gets_everything(fanwire_server, redis_server):
    srv = fanwire_server(env=NODE_ENV, args=["--workers", "2", "--redis", redis_server.url])
    topic = topic_name()
    assert len(worker_pids(srv)) >= 2

    async def main():
        async with http_client() as http:
            await create_topic(http, srv, topic)
            deadline = asyncio.get_running_loop().time() + 15
            while not await known_by_every_worker(srv, topic):
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.1)
            sse = [SSEClient(srv.url, topics=[topic]) for _ in range(6)]
            ws = [WSClient(srv.ws_url) for _ in range(6)]
            for client in (*sse, *ws):
                await client.connect()
            for client in ws:
                await client.subscribe(topic)
            ids = []
            for n in range(20):  # a new connection each: publishes go through both workers
                async with http_client() as fresh:
                    ids.append(await publish(fresh, srv, topic, {"n": n}))
            for client in sse:
                await client.read_messages(20)
                assert_in_order(client.sequence(topic), ids)
            for client in ws:
                await client.recv_events(20, topic=topic)
                assert_in_order(client.sequence(topic), ids)
            for client in (*sse, *ws):
                await client.close()

    run(main(), timeout=90)
    assert srv.log_text().count("fanwire.redis: connected to Redis") == 2  # one per worker
    assert srv.stop() == 0
    assert "Traceback" not in srv.log_text()


def test_the_demo_feed_is_published_once_across_workers(fanwire_server, redis_server):
    """Every worker runs the demo producer, but only the one holding the Redis lease
    publishes: one feed at the configured rate, its ``seq`` counting up by one."""
    topic = topic_name("demo")
    env = {**NODE_ENV, "FANWIRE_DEMO_RATE": "20", "FANWIRE_DEMO_TOPIC": topic}
    srv = fanwire_server(env=env, args=["--workers", "2", "--redis", redis_server.url])

    async def main():
        async with http_client() as http:
            await wait_topic(http, srv, topic)
        async with SSEClient(srv.url, topics=[topic]) as sse:
            frames = await sse.read_messages(40, timeout=20)
        seqs = [frame.data["data"]["seq"] for frame in frames]
        assert seqs == list(range(seqs[0], seqs[0] + 40))

    run(main(), timeout=60)

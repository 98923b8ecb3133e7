"""The ``idle_ttl`` topic option: idle topics are deleted (as by DELETE), recreated on
demand with ``auto_create``; in Redis mode deleted everywhere, once."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import orjson
import pytest
import redis
from redis_support import create_everywhere, http_client, node, topic_name, until

from fanwire.testing.aio import run
from fanwire.testing.clients import SSEClient, WSClient

TOPICS = {"tmp.*": {"idle_ttl": 1.0, "auto_create": True}}
ENV = {"FANWIRE_DEMO_RATE": "0", "FANWIRE_TOPICS": orjson.dumps(TOPICS).decode()}


@pytest.fixture(scope="module")
def server(fanwire_module_server):
    return fanwire_module_server(env=ENV)


def _name():
    return f"tmp.{os.getpid()}-{time.monotonic_ns()}"


async def _gone(http, url):
    return (await http.get(url)).status_code == 404


def test_an_idle_topic_is_deleted_and_recreated_on_demand(server):
    topic = _name()
    keep = _name()  # published to every 0.3 s: never idle
    url = f"{server.url}/topics/{topic}"

    async def main():
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            assert (await http.post(f"{url}/messages", json={"data": 1})).status_code == 202
            assert (await http.get(url)).json()["options"]["idle_ttl"] == 1.0
            start = time.monotonic()
            while time.monotonic() - start < 2.5:
                await http.post(f"{server.url}/topics/{keep}/messages", json={"data": 0})
                await asyncio.sleep(0.3)
            await until(lambda: _gone(http, url), what="the idle topic deleted")
            assert (await http.get(f"{server.url}/topics/{keep}")).status_code == 200
            listed = {t["name"] for t in (await http.get(f"{server.url}/topics")).json()["topics"]}
            assert topic not in listed
            # auto_create: the next publish creates it anew (its old messages are gone).
            again = await http.post(f"{url}/messages", json={"data": 2})
            assert again.status_code == 202
            assert (await http.get(url)).json()["messages"] == 1

    run(main(), timeout=60)


def test_a_topic_with_a_subscriber_is_not_idle(server):
    topic = _name()
    url = f"{server.url}/topics/{topic}"

    async def main():
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            async with WSClient(server.ws_url) as ws:
                await ws.subscribe(topic)  # auto_create
                await asyncio.sleep(2.5)
                assert (await http.get(url)).status_code == 200
                await ws.unsubscribe(topic)
                await until(lambda: _gone(http, url), what="the idle topic deleted")
                # A subscriber that stays gets topic_deleted if it is deleted meanwhile
                # (here by DELETE; the idle sweep deletes the same way).
                await ws.subscribe(topic)
                assert (await http.delete(url)).status_code == 204
                await ws.recv_until(lambda m: m.get("message") == "topic_deleted")

    run(main(), timeout=60)


def test_redis_nodes_delete_an_idle_topic_once_everywhere(fanwire_server, redis_server):
    env = {"topics": orjson.dumps(TOPICS).decode()}
    a = node(fanwire_server, redis_server.url, **env)
    b = node(fanwire_server, redis_server.url, **env)
    topic, idle = topic_name("tmp."), topic_name("tmp.")

    async def main():
        async with http_client() as http:
            await create_everywhere(http, topic, a, b)
            await create_everywhere(http, idle, a, b)
            # A subscriber on b alone keeps the topic on both nodes.
            async with SSEClient(b.url, topics=[topic]):
                for srv in (a, b):
                    await until(lambda s=srv: _gone(http, f"{s.url}/topics/{idle}"))
                await asyncio.sleep(1.0)
                for srv in (a, b):
                    assert (await http.get(f"{srv.url}/topics/{topic}")).status_code == 200
            for srv in (a, b):
                await until(lambda s=srv: _gone(http, f"{s.url}/topics/{topic}"))
        client = redis.Redis.from_url(redis_server.url)
        ops = [
            fields[b"topic"].decode()
            for _, fields in client.xrange("fanwire:control")
            if fields[b"op"] == b"delete"
        ]
        assert ops.count(topic) == 1 and ops.count(idle) == 1
        client.close()

    run(main(), timeout=90)

"""Helpers of the Redis scale-out tests (tests/test_redis_*.py): nodes, topics, publishes.

Servers and Redis come from the fanwire pytest plugin (``fanwire_server``,
``redis_server``); these helpers only talk to them over HTTP.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import time

import httpx

from fanwire.backends.ids import parse_id

_names = itertools.count(1)

#: Settings of every node in these tests: no demo feed, fast heartbeats.
NODE_ENV = {"FANWIRE_DEMO_RATE": "0", "FANWIRE_HEARTBEAT_INTERVAL": "0.5"}


def node(fanwire_server, redis_url, *, args=(), **env):
    """A fanwire server on a free port sharing ``redis_url`` (extra ``FANWIRE_*`` env)."""
    extra = {f"FANWIRE_{k.upper()}": str(v) for k, v in env.items()}
    return fanwire_server(env={**NODE_ENV, "FANWIRE_REDIS_URL": redis_url, **extra}, args=args)


def two_nodes(fanwire_server, redis_url, **env):
    """Two nodes with the same settings sharing ``redis_url``, and a fresh topic name."""
    a, b = (node(fanwire_server, redis_url, **env) for _ in range(2))
    return a, b, topic_name()


def topic_name(prefix="t"):
    return f"{prefix}{os.getpid()}-{next(_names)}"


def http_client():
    return httpx.AsyncClient(timeout=10, trust_env=False)


async def until(check, *, timeout=15.0, what="condition"):
    """Call ``check()`` until it holds (is truthy); the last value. ``check`` may be async,
    or a plain function of what clients received so far."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def create_topic(http, srv, name):
    """Create ``name`` through ``srv`` once its Redis connection is up (503 until then)."""

    async def attempt():
        response = await http.post(srv.url + "/topics", json={"name": name})
        assert response.status_code in (201, 503), response.text
        return response.status_code == 201

    await until(attempt, what=f"creating topic {name} on {srv.url}")


async def create_everywhere(http, name, first, *others):
    """Create ``name`` through ``first``, then wait until each of ``others`` lists it."""
    await create_topic(http, first, name)
    for srv in others:
        await wait_topic(http, srv, name)


async def knows_topic(http, srv, name):
    response = await http.get(srv.url + "/topics")
    return name in {t["name"] for t in response.json()["topics"]}


async def wait_topic(http, srv, name):
    """Wait until ``srv`` lists ``name`` (it learns of topics from Redis)."""
    await until(lambda: knows_topic(http, srv, name), what=f"{srv.url} knowing {name}")


async def publish(http, srv, topic, data, event=None):
    """Publish over REST; the message id (asserting 202)."""
    body = {"data": data} if event is None else {"data": data, "event": event}
    response = await http.post(f"{srv.url}/topics/{topic}/messages", json=body)
    assert response.status_code == 202, response.text
    return response.json()["message_id"]


def by_stream_order(ids):
    """Message ids in publish order: Redis stream ids increase along a topic's stream."""
    return sorted(ids, key=parse_id)

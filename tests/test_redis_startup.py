"""A node starting while the cluster already has topics: it never denies one of them."""

import os
import signal
import threading

import httpx
from redis_support import NODE_ENV, create_topic, http_client, node, publish, topic_name, until

from fanwire.testing.aio import run
from fanwire.testing.clients import SSEClient


async def stream_status(http, base_url, topic):
    """The status of ``GET /stream?topic=...`` (the stream itself is not read)."""
    async with http.stream("GET", base_url + "/stream", params={"topic": topic}) as response:
        return response.status_code


def test_a_fresh_node_never_answers_404_for_a_topic_redis_has(
    fanwire_server, redis_server, free_port
):
    """Node B starts while Redis does not answer (paused: slow, or busy under load), so B
    cannot load the cluster's topics yet. Once B says it is healthy, a client asking it
    for an existing topic must not be told it does not exist (404): B answers 503 (try
    again) until it knows, then serves the topic."""
    a = node(fanwire_server, redis_server.url)
    topic = topic_name()
    url = f"http://127.0.0.1:{free_port}"

    async def prepare():
        async with http_client() as http:
            await create_topic(http, a, topic)
            return await publish(http, a, topic, {"n": 1})

    message_id = run(prepare(), timeout=60)
    started = {}
    env = {**NODE_ENV, "FANWIRE_REDIS_URL": redis_server.url}

    def start_b():
        started["b"] = fanwire_server(env=env, port=free_port, start_timeout=60)

    os.kill(redis_server.pid, signal.SIGSTOP)
    starter = threading.Thread(target=start_b)
    try:
        starter.start()

        async def while_paused():
            async with http_client() as http:

                async def healthy():
                    try:
                        return (await http.get(url + "/health")).status_code == 200
                    except httpx.TransportError:
                        return False

                await until(healthy, timeout=60, what="node B healthy")
                described = (await http.get(f"{url}/topics/{topic}")).status_code
                return await stream_status(http, url, topic), described

        status, described = run(while_paused(), timeout=90)
        assert status != 404, "a fresh node denied a topic that Redis has"
        assert status in (200, 503), status
        assert described != 404, "GET /topics/{name} on a fresh node denied a topic"
        assert described in (200, 503), described
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
        starter.join(timeout=90)

    async def after():
        async with http_client() as http:

            async def served():
                return await stream_status(http, url, topic) == 200

            await until(served, timeout=30, what="node B serving the topic")
        async with SSEClient(url, topics=[topic], last_n=1) as sse:
            await sse.read_messages(1)
        assert sse.ids == [message_id]

    run(after(), timeout=60)
    assert "b" in started

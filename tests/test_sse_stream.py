"""``GET /stream`` (PROTOCOL.md, "Server-Sent Events") against a real server.

Every test runs once per row of the server matrix (fanwire.testing.matrix.SERVINGS,
docs/testing.md): ``-k uvicorn-httptools-native`` picks one row.
"""

import asyncio
import itertools
import os
import re

import httpx
import orjson
import pytest
from matrix_support import create_topic, publish, serving_fixture
from matrix_support import delete_topic as delete

from fanwire.testing.aio import run
from fanwire.testing.assertions import assert_in_order
from fanwire.testing.clients import SSEClient
from fanwire.testing.matrix import SERVINGS

_names = itertools.count(1)
RETENTION = 5


serving = serving_fixture(SERVINGS)


@pytest.fixture(scope="module")
def server(fanwire_module_server, serving):
    """Demo off, default limits."""
    srv = fanwire_module_server(env={"FANWIRE_DEMO_RATE": "0"}, serving=serving)
    yield srv
    srv.stop()  # now, not at the module's end: the next row starts its own


@pytest.fixture(scope="module")
def small(fanwire_module_server, serving):
    """Retention 5, heartbeats every 0.3 s, retry 1500 ms, the demo feeding `events`."""
    env = {
        "FANWIRE_DEMO_RATE": "20",
        "FANWIRE_RETENTION": str(RETENTION),
        "FANWIRE_HEARTBEAT_INTERVAL": "0.3",
        "FANWIRE_SSE_RETRY_MS": "1500",
        "FANWIRE_MAX_SUBSCRIPTIONS_PER_CONNECTION": "3",
    }
    srv = fanwire_module_server(env=env, serving=serving)
    yield srv
    srv.stop()


def new_topic(srv):
    return create_topic(srv, f"s{os.getpid()}-{next(_names)}")


def test_headers_and_retry_first(server):
    topic = new_topic(server)

    async def main():
        async with SSEClient(server.url, topics=[topic]) as sse:
            assert sse.headers["content-type"] == "text/event-stream"
            assert sse.headers["cache-control"] == "no-cache"
            assert sse.headers["x-accel-buffering"] == "no"
            await sse.read_until(lambda c: c.frames, what="retry")
            assert sse.frames[0].retry == 3000

    run(main())


def test_frame_format_on_the_wire(server):
    """Exact bytes: id, event (``message`` by default), compact JSON data, blank line."""
    topic = new_topic(server)
    with httpx.stream(
        "GET",
        server.url + "/stream",
        params={"topic": topic},
        verify=server.verify,
        trust_env=False,
        timeout=10,
    ) as response:
        chunks = response.iter_raw()
        first = next(chunks)
        assert first.startswith(b"retry: 3000\n\n")
        one = publish(server, topic, {"qty": 3})
        two = publish(server, topic, [1, "é"], event="tick")
        raw = first
        while raw.count(b"\n\n") < 3:
            raw += next(chunks)
    frames = raw.split(b"\n\n")
    pattern = rb"id: (\S+)\nevent: (\S+)\ndata: (\{.*\})"
    first_frame = re.fullmatch(pattern, frames[1])
    second_frame = re.fullmatch(pattern, frames[2])
    assert first_frame and second_frame
    assert first_frame.group(1).decode() == one
    assert first_frame.group(2) == b"message"
    data = orjson.loads(first_frame.group(3))
    assert set(data) == {"topic", "data", "ts"}
    assert (data["topic"], data["data"]) == (topic, {"qty": 3})
    assert isinstance(data["ts"], float)
    assert second_frame.group(1).decode() == two
    assert second_frame.group(2) == b"tick"
    assert orjson.loads(second_frame.group(3))["data"] == [1, "é"]


def test_default_topic_is_events_and_retry_is_configurable(small):
    async def main():
        async with SSEClient(small.url) as sse:
            await sse.read_messages(2)
            assert sse.retry == 1500
            assert {f.topic for f in sse.messages} == {"events"}
            assert all(f.event == "message" for f in sse.messages)

    run(main())


def test_heartbeats_when_idle(small):
    topic = new_topic(small)

    async def main():
        async with SSEClient(small.url, topics=[topic]) as sse:
            frame = await sse.read_until_event("heartbeat", timeout=5)
            assert isinstance(frame.data["ts"], float)
            assert frame.id == ""  # heartbeats never carry an id
            assert sse.messages == []

    run(main())


def test_last_n_replays_before_live_in_order(server):
    topic = new_topic(server)
    old = [publish(server, topic, i) for i in range(5)]

    async def main():
        async with SSEClient(server.url, topics=[topic], last_n=3) as sse:
            await sse.read_messages(3)
            live = [publish(server, topic, i) for i in range(5, 8)]
            await sse.read_messages(6)
            assert sse.ids == old[2:] + live
            assert [f.data["data"] for f in sse.messages] == [2, 3, 4, 5, 6, 7]

    run(main())


def test_several_topics_each_in_order(server):
    a, b = new_topic(server), new_topic(server)

    async def main():
        async with SSEClient(server.url, topics=[a, b, a]) as sse:
            await sse.read_until(lambda c: c.frames)
            ids = {a: [], b: []}
            for i in range(20):
                topic = a if i % 3 else b
                ids[topic].append(publish(server, topic, i))
            await sse.read_messages(20)
            for topic in (a, b):
                assert [f.id for f in sse.messages if f.topic == topic] == ids[topic]

    run(main())


def test_resume_with_last_event_id_has_no_dup_and_no_gap(server):
    topic = new_topic(server)
    published = [publish(server, topic, i) for i in range(4)]

    async def main():
        async with SSEClient(server.url, topics=[topic], last_n=4) as sse:
            await sse.read_messages(4)
            last = sse.last_id
        published.extend(publish(server, topic, i) for i in range(4, 9))
        async with SSEClient(server.url, topics=[topic], resume_from=last) as again:
            await again.read_messages(5)
            published.append(publish(server, topic, 9))
            await again.read_messages(6)
            assert last == published[3]
            assert_in_order(again.sequence(), published[4:])
            assert again.of_event("gap") == []

    run(main())


def test_last_event_id_query_parameter_and_header_precedence(server):
    topic = new_topic(server)
    published = [publish(server, topic, i) for i in range(6)]

    async def main():
        async with SSEClient(server.url, topics=[topic], last_event_id=published[1]) as sse:
            await sse.read_messages(4)
            assert sse.ids == published[2:]
        async with SSEClient(
            server.url, topics=[topic], last_event_id=published[1], resume_from=published[3]
        ) as sse:
            await sse.read_messages(2)
            await sse.read_for(0.2)
            assert sse.ids == published[4:]

    run(main())


@pytest.mark.parametrize("stale", ["1-1", "garbage", "99999999999999999999-1", "-", "1-x"])
def test_unusable_resume_ids_get_a_gap_then_everything_retained(small, stale):
    """Another epoch's, unparseable, malformed: never a 400; a gap, then the log."""
    topic = new_topic(small)
    published = [publish(small, topic, i) for i in range(RETENTION)]

    async def main():
        async with SSEClient(small.url, topics=[topic], resume_from=stale) as sse:
            await sse.read_messages(RETENTION)
            gap = sse.frames[1]
            assert gap.event == "gap"
            assert gap.data == {"topic": topic, "first_available": published[0]}
            assert_in_order(sse.sequence(topic), published)

    run(main())


def test_too_old_resume_id_gets_a_gap_with_first_available(small):
    topic = new_topic(small)
    published = [publish(small, topic, i) for i in range(RETENTION + 4)]

    async def main():
        async with SSEClient(small.url, topics=[topic], resume_from=published[1]) as sse:
            await sse.read_messages(RETENTION)
            gaps = sse.of_event("gap")
            assert [g.data for g in gaps] == [{"topic": topic, "first_available": published[4]}]
            assert sse.ids == published[4:]
            assert_in_order(sse.sequence(), published[2:])

    run(main())


def test_topic_deletion_notice_and_end_of_stream(server):
    a, b = new_topic(server), new_topic(server)

    async def main():
        async with SSEClient(server.url, topics=[a, b]) as sse:
            await sse.read_until(lambda c: c.frames)
            assert delete(server, a) == 204
            frame = await sse.read_until_event("topic_deleted")
            assert frame.data == {"topic": a}
            mid = publish(server, b, "still here")
            await sse.read_messages(1)
            assert sse.ids == [mid]
            assert delete(server, b) == 204
            frames = await sse.read_to_end()
            assert [f.data for f in frames if f.event == "topic_deleted"] == [
                {"topic": a},
                {"topic": b},
            ]

    run(main())


async def wait_connections(srv, count):
    async with httpx.AsyncClient(base_url=srv.url, verify=srv.verify, trust_env=False) as http:
        for _ in range(200):
            open_ = (await http.get("/stats")).json()["connections"]
            if sum(open_.values()) == count:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"connections never went to {count}: {open_}")


def _status(srv, params, headers=None):
    response = httpx.get(
        srv.url + "/stream", params=params, headers=headers, verify=srv.verify, trust_env=False
    )
    return response.status_code, response.json()


@pytest.mark.parametrize(
    "params, status, code",
    [
        ({"topic": "bad name"}, 400, "INVALID_TOPIC"),
        ({"topic": ""}, 400, "INVALID_TOPIC"),
        ({"topic": "a\r\nb"}, 400, "INVALID_TOPIC"),
        ({"topic": "x" * 10_000}, 400, "INVALID_TOPIC"),
        ({"topic": "no-such-topic"}, 404, "TOPIC_NOT_FOUND"),
        ({"last_n": "abc"}, 400, None),
        ({"last_n": "-1"}, 400, None),
        ({"last_n": "1001"}, 400, None),
        ({"last_n": "9" * 40}, 400, None),
        ({"policy": "block"}, 400, None),
        ({"queue_size": "0"}, 400, None),
        ({"queue_size": "many"}, 400, None),
    ],
)
def test_bad_requests_fail_before_the_stream(server, params, status, code):
    query = {"topic": new_topic(server), **params}
    got_status, body = _status(server, query)
    assert got_status == status
    assert set(body) == {"error", "message"}
    if code:
        assert body["error"] == code


def test_too_many_topics_per_stream_is_429(small):
    topics = [new_topic(small) for _ in range(4)]
    status, body = _status(small, [("topic", t) for t in topics])
    assert (status, body["error"]) == (429, "LIMIT_REACHED")


def test_server_keeps_serving_after_bad_input(server):
    topic = new_topic(server)

    async def main():
        async with SSEClient(server.url, topics=[topic]) as healthy:
            for params in ({"topic": "\n"}, {"last_n": "x"}, {"topic": "missing"}):
                assert _status(server, params)[0] in (400, 404)
            bad = await SSEClient(server.url, topics=[topic], resume_from="%%;; <>\\ 1-").connect()
            await bad.close()
            mid = publish(server, topic, "ok")
            await healthy.read_messages(1)
            assert healthy.ids == [mid]

    run(main())


def test_connection_limit_is_503(fanwire_server, serving):
    srv = fanwire_server(
        env={"FANWIRE_DEMO_RATE": "0", "FANWIRE_MAX_CONNECTIONS": "1"}, serving=serving
    )
    topic = new_topic(srv)

    async def main():
        async with SSEClient(srv.url, topics=[topic]) as first:
            await first.read_until(lambda c: c.frames)
            second = await SSEClient(srv.url, topics=[topic], expect_status=503).connect()
            assert orjson.loads(second.body)["error"] == "LIMIT_REACHED"
        await wait_connections(srv, 0)
        async with SSEClient(srv.url, topics=[topic]) as third:  # the slot is free again
            await third.read_until(lambda c: c.frames)

    run(main())

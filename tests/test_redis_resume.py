"""Resume on any node of a Redis-backed cluster: ids from other nodes, history that only
the stream still holds, trimmed history (gap), and ids that are not of this log."""

import redis
from redis_support import (
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


def gaps(sequence):
    return [item for item in sequence if isinstance(item, Gap)]


def resume_gap(item, topic, first_available):
    """True when ``item`` is the resume gap notice of ``topic`` naming ``first_available``."""
    return (
        isinstance(item, Gap)
        and item.kind == "resume"
        and (item.topic, item.first_available) == (topic, first_available)
    )


def test_resume_on_b_with_an_id_received_from_a(fanwire_server, redis_server):
    a, b, topic = two_nodes(fanwire_server, redis_server.url)

    async def main():
        async with http_client() as http:
            await create_everywhere(http, topic, a, b)
            async with SSEClient(a.url, topics=[topic]) as first:
                ids = [await publish(http, a, topic, {"n": n}) for n in range(10)]
                await first.read_messages(4)
                resume_id = first.messages[3].id
            ids += [await publish(http, b, topic, {"n": n}) for n in range(10, 15)]
            async with SSEClient(b.url, topics=[topic], resume_from=resume_id) as sse:
                await sse.read_messages(11)
                async with WSClient(b.ws_url) as ws:
                    await ws.subscribe(topic, since=resume_id)
                    ids.append(await publish(http, a, topic, {"n": 15}))
                    await ws.recv_events(12, topic=topic)
                    await sse.read_messages(12)
        expected = ids[4:]
        for sequence in (sse.sequence(topic), ws.sequence(topic)):
            assert not gaps(sequence)
            assert_in_order(sequence, expected)
        assert len(sse.messages) == len(ws.events) == len(expected)

    run(main(), timeout=60)


def test_resume_older_than_the_local_ring_but_within_the_stream(fanwire_server, redis_server):
    a, b, topic = two_nodes(fanwire_server, redis_server.url, retention=10)

    async def main():
        async with http_client() as http:
            await create_everywhere(http, topic, a, b)
            ids = [await publish(http, a, topic, {"n": n}) for n in range(40)]
            late = node(fanwire_server, redis_server.url, retention=10)  # empty ring
            await wait_topic(http, late, topic)
            ids += [await publish(http, a, topic, {"n": n}) for n in range(40, 43)]
            for srv in (b, late):
                async with SSEClient(srv.url, topics=[topic], resume_from=ids[4]) as sse:
                    await sse.read_messages(38)
                    ws = WSClient(srv.ws_url)
                    async with ws:
                        await ws.subscribe(topic, since=ids[4])
                        await ws.recv_events(38, topic=topic)
                for sequence in (sse.sequence(topic), ws.sequence(topic)):
                    assert not gaps(sequence)
                    assert_in_order(sequence, ids[5:])

    run(main(), timeout=90)


def test_resume_from_a_trimmed_id_gets_a_gap_then_everything_retained(fanwire_server, redis_server):
    a = node(fanwire_server, redis_server.url)
    b = node(fanwire_server, redis_server.url, retention=5)
    topic = topic_name()

    async def main():
        async with http_client() as http:
            await create_everywhere(http, topic, a, b)
            ids = [await publish(http, a, topic, {"n": n}) for n in range(20)]
            with redis.Redis.from_url(redis_server.url) as direct:
                assert direct.xtrim(f"fanwire:stream:{topic}", maxlen=8, approximate=False) == 12
            async with SSEClient(b.url, topics=[topic], resume_from=ids[2]) as sse:
                await sse.read_messages(8)
            async with WSClient(b.ws_url) as ws:
                await ws.subscribe(topic, since=ids[2])
                await ws.recv_events(8, topic=topic)
        for sequence in (sse.sequence(topic), ws.sequence(topic)):
            assert resume_gap(sequence[0], topic, ids[12])
            assert_in_order(sequence, ids[3:])
            assert sequence[1:] == ids[12:]

    run(main(), timeout=60)


def test_unparseable_and_foreign_ids_get_a_gap_then_everything_retained(
    fanwire_server, redis_server
):
    a = node(fanwire_server, redis_server.url)
    topic = topic_name()

    async def main():
        async with http_client() as http:
            await create_topic(http, a, topic)
            ids = [await publish(http, a, topic, {"n": n}) for n in range(6)]
            for stale in ("not-an-id", "99999999999999-0", "1715-xyz"):
                async with SSEClient(a.url, topics=[topic], resume_from=stale) as sse:
                    await sse.read_messages(6)
                sequence = sse.sequence(topic)
                assert resume_gap(sequence[0], topic, ids[0])
                assert sequence[1:] == ids

    run(main(), timeout=60)


def test_resume_of_a_stream_of_several_topics_on_another_node(fanwire_server, redis_server):
    """The one Last-Event-ID of a multi-topic stream is an id of one topic's stream; for the
    other topics it is a point in time: what followed it, no gap, no duplicate."""
    a = node(fanwire_server, redis_server.url)
    b = node(fanwire_server, redis_server.url)
    busy, quiet = topic_name("busy"), topic_name("quiet")

    async def main():
        async with http_client() as http:
            for topic in (busy, quiet):
                await create_everywhere(http, topic, a, b)
            async with SSEClient(a.url, topics=[busy, quiet]) as first:
                quiet_ids = [await publish(http, a, quiet, {"q": 0})]
                busy_ids = [await publish(http, a, busy, {"n": n}) for n in range(3)]
                await first.read_messages(4)
                resume_id = first.last_id
            busy_ids += [await publish(http, b, busy, {"n": n}) for n in range(3, 5)]
            quiet_ids.append(await publish(http, b, quiet, {"q": 1}))
            async with SSEClient(b.url, topics=[busy, quiet], resume_from=resume_id) as sse:
                await sse.read_messages(3)
        assert resume_id == busy_ids[2]
        assert sse.sequence(busy) == busy_ids[3:]
        assert sse.sequence(quiet) == quiet_ids[1:]

    run(main(), timeout=60)


def test_last_n_on_a_node_that_started_after_the_messages(fanwire_server, redis_server):
    a = node(fanwire_server, redis_server.url)
    topic = topic_name()

    async def main():
        async with http_client() as http:
            await create_topic(http, a, topic)
            ids = [await publish(http, a, topic, {"n": n}) for n in range(8)]
            late = node(fanwire_server, redis_server.url)
            await wait_topic(http, late, topic)
            async with SSEClient(late.url, topics=[topic], last_n=3) as sse:
                await sse.read_messages(3)
                async with WSClient(late.ws_url) as ws:
                    await ws.subscribe(topic, last_n=3)
                    await ws.recv_events(3, topic=topic)
                    ids.append(await publish(http, a, topic, {"n": 8}))
                    await ws.recv_events(4, topic=topic)
                await sse.read_messages(4)
        assert sse.sequence(topic) == ids[5:]
        assert ws.sequence(topic) == ids[5:]

    run(main(), timeout=60)

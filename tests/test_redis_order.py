"""Redis mode: a stream of several topics is in id order, and that order is the
deployment's publish order (PROTOCOL.md, "A stream of several topics delivers their
messages in id order..."), so its last id resumes every topic with no duplicate, no gap."""

import asyncio
import os
import signal

from redis_support import (
    create_everywhere,
    create_topic,
    http_client,
    node,
    publish,
    topic_name,
    two_nodes,
)

from fanwire.backends.ids import parse_id
from fanwire.testing.aio import run
from fanwire.testing.assertions import assert_in_order
from fanwire.testing.clients import SSEClient, WSClient

PUBLISHERS = 4  # per node
BURST = 6  # messages a publisher sends to one topic before switching to the other
ROUNDS = 4  # bursts per topic and publisher


def test_two_topics_published_on_both_nodes_arrive_in_publish_order_and_resume_exactly(
    fanwire_server, redis_server
):
    a, b, topic = two_nodes(fanwire_server, redis_server.url)
    topics = [topic + "a", topic + "b"]

    async def publisher(srv, tag):
        """Interleaved bursts, each publish acknowledged before the next: this
        publisher's own order across both topics is known."""
        ids = []
        async with WSClient(srv.ws_url) as ws:
            for burst in range(2 * ROUNDS):
                for n in range(BURST):
                    ack = await ws.publish(topics[(burst + tag) % 2], {"from": tag, "n": n})
                    ids.append(ack["message_id"])
        return ids

    async def resumed(last_id, expected):
        async with SSEClient(a.url, topics=topics, resume_from=last_id) as sse:
            await sse.read_messages(len(expected), timeout=20)
            return last_id, sse.sequence()

    async def main():
        async with http_client() as http:
            for name in topics:
                await create_everywhere(http, name, a, b)
            async with SSEClient(b.url, topics=topics) as sse, WSClient(b.ws_url) as ws:
                for name in topics:
                    await ws.subscribe(name)
                tags = range(2 * PUBLISHERS)
                per_publisher = await asyncio.gather(
                    *(publisher(a if tag % 2 else b, tag) for tag in tags)
                )
                # The last one: every resume below has something to deliver.
                per_publisher.append([await publish(http, a, topics[0], {"last": True})])
                everything = sorted((i for ids in per_publisher for i in ids), key=parse_id)
                await sse.read_messages(len(everything), timeout=30)
                await ws.recv_events(len(everything), timeout=30)
            for received in (sse.ids, ws.event_ids()):
                # In id order across both topics...
                assert received == everything
                # ...which is publish order: each publisher's messages (acknowledged one
                # after the other, to either topic) come in the order it sent them.
                for ids in per_publisher:
                    assert [i for i in received if i in set(ids)] == ids
            # Resuming on the other node from any id delivered: exactly what followed it.
            history = sse.ids
            for start in range(0, len(history), 8):
                results = await asyncio.gather(
                    *(
                        resumed(i, history[k + 1 :])
                        for k, i in enumerate(history)
                        if start <= k < start + 8
                    )
                )
                for last_id, sequence in results:
                    after = history[history.index(last_id) + 1 :]
                    assert_in_order(sequence, after)
                    assert sequence == after, f"resumed from {last_id}"

    run(main(), timeout=240)


def test_last_n_over_two_topics_read_from_redis_comes_in_id_order(fanwire_server, redis_server):
    a = node(fanwire_server, redis_server.url)
    topics = [topic_name("la"), topic_name("lb")]

    async def main():
        async with http_client() as http:
            for name in topics:
                await create_everywhere(http, name, a)
            ids = {name: [] for name in topics}
            order = []
            for n in range(12):
                name = topics[n % 3 == 0]  # a, b, b, a, b, b, ...: bursts of both
                message_id = await publish(http, a, name, {"n": n})
                ids[name].append(message_id)
                order.append(message_id)
            # A node started now has none of it in its ring: the history is Redis's.
            b = node(fanwire_server, redis_server.url)
            async with SSEClient(b.url, topics=topics, last_n=3) as sse:
                await sse.read_messages(6)
                later = [await publish(http, a, name, {"later": name}) for name in topics]
                await sse.read_messages(8)
        replay = sorted(ids[topics[0]][-3:] + ids[topics[1]][-3:], key=order.index)
        assert sse.ids == replay + later

    run(main(), timeout=60)


def test_a_node_catching_up_feeds_its_topics_in_id_order(fanwire_server, redis_server):
    """B's reader reads 10 entries per stream at a time (half its retention of 20): after
    a pause, topic a's reply ends before topic b's begins, and a's rest, older than all of
    b's, must not come after them."""
    a = node(fanwire_server, redis_server.url)
    b = node(fanwire_server, redis_server.url, retention=20)
    topics = [topic_name("ca"), topic_name("cb")]

    async def main():
        async with http_client() as http:
            for name in topics:
                await create_everywhere(http, name, a, b)
            async with SSEClient(b.url, topics=topics) as sse, WSClient(b.ws_url) as ws:
                for name in topics:
                    await ws.subscribe(name)
                ids = [await publish(http, a, name, {"first": name}) for name in topics]
                await sse.read_messages(2)
                await ws.recv_events(2)
                os.kill(b.pid, signal.SIGSTOP)
                try:
                    for name, count in ((topics[0], 15), (topics[1], 15), (topics[0], 5)):
                        ids += [await publish(http, a, name, {"n": n}) for n in range(count)]
                finally:
                    os.kill(b.pid, signal.SIGCONT)
                await sse.read_messages(len(ids), timeout=30)
                await ws.recv_events(len(ids), timeout=30)
        assert ids == sorted(ids, key=parse_id)  # publish order is id order
        assert sse.ids == ids
        assert ws.event_ids() == ids

    run(main(), timeout=60)


def test_a_topic_only_another_node_published_to_joins_a_stream_in_id_order(
    fanwire_server, redis_server
):
    """While B is paused, A creates a topic and publishes to it, then to a topic B's client
    already follows; the client subscribes to the new topic meanwhile. When B's reader
    learns of the new topic, the other topic's newer entries come in the same read: the
    new topic's older ones must not follow them on the client's connection."""
    a = node(fanwire_server, redis_server.url)
    b = node(fanwire_server, redis_server.url)
    known = topic_name("known")

    async def main():
        async with http_client() as http:
            await create_everywhere(http, known, a, b)
            async with WSClient(b.ws_url) as ws:
                await ws.subscribe(known)
                await publish(http, a, known, {"first": True})
                await ws.recv_events(1)
                for round in range(3):
                    fresh = topic_name("fresh")
                    os.kill(b.pid, signal.SIGSTOP)
                    try:
                        # B's reader was blocked reading `known`: this ends that read, so
                        # the next one asks for `known` (and the control stream) only.
                        await publish(http, a, known, {"round": round})
                        await create_topic(http, a, fresh)
                        for n in range(3):
                            await publish(http, a, fresh, {"n": n})
                        newer = [await publish(http, a, known, {"n": n}) for n in range(3)]
                        rid = f"sub-{round}"
                        await ws.send({"type": "subscribe", "topic": fresh, "request_id": rid})
                    finally:
                        os.kill(b.pid, signal.SIGCONT)
                    ack = await ws.recv_until(lambda m, rid=rid: m.get("request_id") == rid)
                    assert ack["type"] == "ack", ack
                    await ws.wait_for(
                        lambda c, newer=newer: set(newer) <= set(c.event_ids()),
                        what="the newer entries",
                    )
                    # One more on each: whatever B feeds of the round comes before them.
                    last = [await publish(http, a, name, {"last": name}) for name in (fresh, known)]
                    await ws.wait_for(lambda c, last=last: set(last) <= set(c.event_ids()))
        received = ws.event_ids()
        assert len(received) == len(set(received))
        assert received == sorted(received, key=parse_id), "a topic's older entries came late"

    run(main(), timeout=120)

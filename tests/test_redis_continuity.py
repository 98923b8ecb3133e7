"""No silent loss in Redis mode: a node whose reader fell more than the retention behind
tells its clients of the hole (and only of it), and a resume id that Redis does not hold
gets a ``gap``."""

import asyncio
import os
import signal

import pytest
import redis
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


def gaps(sequence):
    return [item for item in sequence if isinstance(item, Gap)]


def delivered(sequence):
    return [item for item in sequence if not isinstance(item, Gap)]


def retained(redis_url, topic):
    """The ids Redis still holds for ``topic``, oldest first."""
    with redis.Redis.from_url(redis_url) as direct:
        return [entry_id.decode() for entry_id, _ in direct.xrange(f"fanwire:stream:{topic}")]


async def publish_when_back(http, srv, topic, data):
    """Publish, retrying while the node reconnects to Redis (503 meanwhile)."""

    async def attempt():
        response = await http.post(f"{srv.url}/topics/{topic}/messages", json={"data": data})
        assert response.status_code in (202, 503), response.text
        return response.json()["message_id"] if response.status_code == 202 else None

    return await until(attempt, timeout=30, what="publishing")


@pytest.mark.parametrize(
    ("b_retention", "cut"),
    [(50, False), (1000, True)],
    ids=["paused", "paused-with-a-big-ring-and-reconnected"],
)
def test_node_paused_past_the_retention_announces_exactly_the_hole(
    fanwire_server, redis_server, b_retention, cut
):
    """B stops (SIGSTOP) while A publishes 500 messages into streams trimmed to about 50
    (A's retention). Its clients then get every message Redis still holds, and a gap for
    exactly the others. With ``cut``, B's Redis connections are also killed meanwhile
    (it reconnects), and B's own ring is big enough to hold what came before the hole:
    a resume from an id before the hole must still get the gap."""
    a = node(fanwire_server, redis_server.url, retention=50)
    b = node(fanwire_server, redis_server.url, retention=b_retention)
    topic = topic_name()

    async def main():
        async with http_client() as http:
            await create_everywhere(http, topic, a, b)
            sse = SSEClient(b.url, topics=[topic])
            ws = WSClient(b.ws_url)
            for client in (sse, ws):
                await client.connect()
            await ws.subscribe(topic)
            ids = [await publish(http, a, topic, {"n": n}) for n in range(5)]
            await sse.read_messages(5)
            await ws.recv_events(5, topic=topic)
            os.kill(b.pid, signal.SIGSTOP)  # B's reader falls far behind the retention
            try:
                ids += [await publish(http, a, topic, {"n": n}) for n in range(5, 505)]
                kept = retained(redis_server.url, topic)
                if cut:
                    with redis.Redis.from_url(redis_server.url) as direct:
                        direct.client_kill_filter(_type="normal", skipme=True)
            finally:
                os.kill(b.pid, signal.SIGCONT)
            # B reads what Redis kept before anything more is published: each XADD trims
            # (MAXLEN ~, whole stream nodes of 100), so publishing on while B, slow on a
            # loaded machine, is still catching up would trim a second hole out of `kept`.
            await sse.read_until(lambda c: kept[-1] in c.ids, timeout=60, what="B caught up")
            await ws.wait_for(lambda c: kept[-1] in c.event_ids(topic), timeout=60)
            ids += [await publish_when_back(http, a, topic, {"n": n}) for n in range(505, 510)]
            await sse.read_until(lambda c: ids[-1] in c.ids, timeout=30, what="the last id")
            await ws.wait_for(lambda c: ids[-1] in c.event_ids(topic), timeout=30)
            for client in (sse, ws):
                await client.close()
            # A client that got ids[4] from B before the pause resumes on B. The publishes
            # since `kept` trimmed on (MAXLEN ~ drops whole stream nodes of 100): it can
            # only get what Redis holds now.
            kept_now = retained(redis_server.url, topic)
            async with SSEClient(b.url, topics=[topic], resume_from=ids[4]) as late:
                await late.read_until(lambda c: ids[-1] in c.ids, what="the last id")
        assert ids[4] not in kept and len(kept) < 450  # Redis did trim what B had not read
        for sequence, expected, held in (
            (sse.sequence(topic), ids, kept),
            (ws.sequence(topic), ids, kept),
            (late.sequence(topic), ids[5:], kept_now),
        ):
            # In order, no duplicate, nothing missing but where a gap was announced...
            assert_in_order(sequence, expected)
            # ... and that is exactly the hole: one gap, then all that Redis still held.
            assert len(gaps(sequence)) == 1, [(g, sequence.index(g)) for g in gaps(sequence)]
            [gap] = gaps(sequence)
            got = delivered(sequence)
            assert set(held) <= set(got), "a message Redis still held was not delivered"
            assert gap.first_available == got[sequence.index(gap)]
            missing = [i for i in ids[5:] if i not in got]
            assert missing == ids[ids.index(missing[0]) : ids.index(gap.first_available)]

    run(main(), timeout=120)
    assert "trimmed before this node read them" in b.log_text()
    assert "Traceback" not in b.log_text()


def test_resume_ids_that_redis_does_not_hold_get_a_gap(fanwire_server, redis_server):
    a, b, topic = two_nodes(fanwire_server, redis_server.url)

    async def main():
        async with http_client() as http:
            await create_everywhere(http, topic, a, b)
            ids = [await publish(http, a, topic, {"n": n}) for n in range(6)]
            # Older than the stream, or between two of its entries: not an id of this log
            # (another run, another deployment, a Redis that lost its data).
            split = [tuple(int(part) for part in i.split("-")) for i in ids]
            at = next(n for n in range(5) if split[n][0] < split[n + 1][0])
            between = f"{split[at][0]}-{split[at][1] + 1}"
            for stale, after in (("1-1", ids), (between, ids[at + 1 :])):
                for srv in (a, b):
                    async with SSEClient(srv.url, topics=[topic], resume_from=stale) as sse:
                        await sse.read_messages(len(after))
                    async with WSClient(srv.ws_url) as ws:
                        await ws.subscribe(topic, since=stale)
                        await ws.recv_events(len(after), topic=topic)
                    for sequence in (sse.sequence(topic), ws.sequence(topic)):
                        assert isinstance(sequence[0], Gap), (stale, srv.url, sequence)
                        assert sequence[0].first_available == after[0]
                        assert sequence[1:] == after
            # A normal resume on either node, from the last id or an earlier one: no gap.
            for resume_id in (ids[-1], ids[2]):
                for srv in (a, b):
                    async with SSEClient(srv.url, topics=[topic], resume_from=resume_id) as sse:
                        async with WSClient(srv.ws_url) as ws:
                            await ws.subscribe(topic, since=resume_id)
                            ids.append(await publish(http, a, topic, {"n": len(ids)}))
                            await ws.wait_for(lambda c: ids[-1] in c.event_ids(topic))
                        await sse.read_until(lambda c: ids[-1] in c.ids)
                    expected = ids[ids.index(resume_id) + 1 :]
                    for sequence in (sse.sequence(topic), ws.sequence(topic)):
                        assert sequence == expected, (resume_id, srv.url)

    run(main(), timeout=90)


def test_resume_ids_of_a_redis_that_lost_its_data_get_a_gap(fanwire_server, redis_server):
    a = node(fanwire_server, redis_server.url)
    topic = topic_name()

    async def main():
        async with http_client() as http:
            await create_topic(http, a, topic)
            old = [await publish(http, a, topic, {"n": n}) for n in range(3)]
            with redis.Redis.from_url(redis_server.url) as direct:
                direct.flushall()  # Redis lost everything (e.g. restarted without persistence)
            await create_topic(http, a, topic)
            new = [await publish(http, a, topic, {"n": n}) for n in range(2)]
            async with SSEClient(a.url, topics=[topic], resume_from=old[-1]) as sse:
                await sse.read_messages(2)
            async with WSClient(a.ws_url) as ws:
                await ws.subscribe(topic, since=old[-1])
                await ws.recv_events(2, topic=topic)
        for sequence in (sse.sequence(topic), ws.sequence(topic)):
            assert isinstance(sequence[0], Gap) and sequence[0].first_available == new[0]
            assert sequence[1:] == new

    run(main(), timeout=60)


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_slow_redis_never_blocks_the_event_loop(fanwire_server, redis_server_factory, transport):
    """Subscribing to a topic that must first be created (auto-create) or looked up in
    Redis waits for Redis without blocking the node: meanwhile it still answers others."""
    slow = redis_server_factory(args=["--enable-debug-command", "yes"])
    a = node(fanwire_server, slow.url, auto_create_topics="true")

    async def sleeping_redis(seconds):
        """Make Redis unresponsive for ``seconds`` (from now until the task ends)."""
        with redis.Redis.from_url(slow.url) as direct:
            await asyncio.to_thread(direct.execute_command, "DEBUG", "SLEEP", seconds)

    async def main():
        async with http_client() as http:
            await create_topic(http, a, topic_name())  # connected to Redis
            async with WSClient(a.ws_url) as ws:
                sse = SSEClient(a.url, topics=[topic_name()], connect_timeout=30)
                stall = asyncio.ensure_future(sleeping_redis(2))
                await asyncio.sleep(0.2)
                if transport == "ws":
                    pending = asyncio.ensure_future(ws.subscribe(topic_name(), timeout=30))
                else:
                    pending = asyncio.ensure_future(sse.connect())
                await asyncio.sleep(0.3)  # the node now waits for Redis on `pending`
                health = await http.get(a.url + "/health")
                assert health.status_code == 200
                # Answered while Redis still sleeps (on a blocked loop, only once it woke).
                assert not stall.done(), "the loop was blocked until Redis answered"
                assert not pending.done()
                await pending
                await stall
                await sse.close()

    run(main(), timeout=90)

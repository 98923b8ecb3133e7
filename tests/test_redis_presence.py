"""Occupancy and presence across two fanwire processes sharing one real Redis.

Counts and members agree on both nodes, joins and leaves reach the other node's
subscribers, a ``kill -9``'d node's members leave within ``presence_ttl``, a node shut down
takes its members with it, and the hooks fire once per transition across the cluster
(``tests/presence_app.py`` publishes each to the topic ``hooks``).
"""

import asyncio
import contextlib
from pathlib import Path

from redis_support import NODE_ENV, create_everywhere, http_client, topic_name, until

from fanwire.testing.aio import run
from fanwire.testing.clients import SSEClient, WSClient

HOOK_APP = {"app": "presence_app:create", "factory": True, "app_dir": str(Path(__file__).parent)}
TTL = 1.5  # seconds: presence_ttl of these nodes


def nodes(fanwire_server, redis_url, count=2, **options):
    env = {
        **NODE_ENV,
        "FANWIRE_REDIS_URL": redis_url,
        "FANWIRE_PRESENCE_TTL": str(TTL),
    }
    return [fanwire_server(env=env, **options) for _ in range(count)]


@contextlib.asynccontextmanager
async def room(*srvs):
    """An HTTP client, and a new topic that each of ``srvs`` lists."""
    topic = topic_name("room")
    async with http_client() as http:
        await create_everywhere(http, topic, *srvs)
        yield http, topic


async def occupancy(http, srv, topic):
    rows = (await http.get(srv.url + "/topics")).json()["topics"]
    return next((r["subscribers"] for r in rows if r["name"] == topic), None)


async def members(http, srv, topic):
    response = await http.get(f"{srv.url}/topics/{topic}/presence")
    assert response.status_code == 200, response.text
    return response.json()["members"]


def joined(ws, kind, client_id):
    return any(
        m.get("message") == kind and m["member"]["client_id"] == client_id for m in ws.messages
    )


def test_counts_members_and_notices_agree_on_both_nodes(fanwire_server, redis_server):
    a, b = nodes(fanwire_server, redis_server.url)

    async def main():
        async with room(a, b) as (http, topic):
            async with WSClient(b.ws_url) as watcher, WSClient(a.ws_url) as member:
                await watcher.request({"type": "subscribe", "topic": topic, "join_leave": True})
                info = {"name": "Ada"}
                await member.request({"type": "subscribe", "topic": topic, "presence": info})
                join = await watcher.recv_until(lambda m: m.get("message") == "join")
                assert join["member"]["client_id"] == member.client_id
                assert join["member"]["info"] == info
                sse = SSEClient(b.url, topics=[topic], params={"presence": "1"})
                await sse.connect()
                for srv in (a, b):

                    async def agreed(srv=srv):
                        found = await members(http, srv, topic)
                        return len(found) == 2 and await occupancy(http, srv, topic) == 3

                    await until(agreed, what=f"{srv.url} seeing 2 members, 3 subscribers")
                assert await members(http, a, topic) == await members(http, b, topic)
                # the console's poll: both nodes, and which one answered
                stats = [(await http.get(s.url + "/stats")).json() for s in (a, b)]
                assert stats[0]["nodes"] == stats[1]["nodes"]
                assert sorted(s["node"] for s in stats) == stats[0]["nodes"]
                assert stats[1]["presence"][topic] == 2 and stats[1]["occupancy"][topic] == 3
                await sse.close()
                await member.unsubscribe(topic)
                await until(
                    lambda: joined(watcher, "leave", member.client_id),
                    what="the leave of the member on the other node",
                )
                for srv in (a, b):

                    async def only_watcher(srv=srv):
                        found = await members(http, srv, topic)
                        return not found and await occupancy(http, srv, topic) == 1

                    await until(only_watcher, what=f"{srv.url}: no member left")
                answer_id = "occ-1"
                await watcher.send({"type": "occupancy", "topic": topic, "request_id": answer_id})
                reply = await watcher.recv_until(lambda m: m.get("request_id") == answer_id)
                assert reply["subscribers"] == 1

    run(main(), timeout=90)


def test_a_killed_nodes_members_leave_within_the_ttl(fanwire_server, redis_server):
    a, b = nodes(fanwire_server, redis_server.url)

    async def main():
        async with room(a, b) as (http, topic):
            async with WSClient(b.ws_url) as watcher:
                await watcher.request({"type": "subscribe", "topic": topic, "join_leave": True})
                member = WSClient(a.ws_url)
                await member.connect()
                await member.request({"type": "subscribe", "topic": topic, "presence": True})
                await until(lambda: _count(members(http, b, topic), 1), what="the member on b")
                assert await occupancy(http, b, topic) == 2
                a.kill()  # SIGKILL: no goodbye
                await until(
                    lambda: joined(watcher, "leave", member.client_id),
                    timeout=10 * TTL,
                    what="the killed node's member leaving",
                )
                assert await members(http, b, topic) == []
                assert await occupancy(http, b, topic) == 1
                await member.close()

    run(main(), timeout=90)


def test_a_node_shut_down_takes_its_members_along(fanwire_server, redis_server):
    a, b = nodes(fanwire_server, redis_server.url)

    async def main():
        async with room(a, b) as (http, topic):
            async with SSEClient(b.url, topics=[topic], params={"join_leave": "1"}) as watcher:
                member = SSEClient(a.url, topics=[topic], params={"presence": "1"})
                await member.connect()
                frame = await watcher.read_until_event("join")
                await asyncio.to_thread(a.stop)  # SIGTERM: the clients get `shutdown`
                left = await watcher.read_until_event("leave")
                assert left.data == frame.data
                assert await members(http, b, topic) == []
                await member.close()

    run(main(), timeout=90)


async def _count(pending, n):
    return len(await pending) == n


def hook_events(ws, topic):
    return [
        (e["data"]["hook"], e["data"]["node"]) for e in ws.events if e["data"]["topic"] == topic
    ]


def test_hooks_fire_once_per_transition_across_the_cluster(fanwire_server, redis_server):
    a, b = nodes(fanwire_server, redis_server.url, **HOOK_APP)

    async def main():
        async with room(a, b) as (http, topic):
            for srv in (a, b):  # the hooks publish to it
                response = await http.post(srv.url + "/topics", json={"name": "hooks"})
                assert response.status_code in (201, 503)
            await create_everywhere(http, "hooks", a, b)
            async with WSClient(b.ws_url) as watch:
                await watch.subscribe("hooks")
                clients = [WSClient(s.ws_url) for s in (a, b, a, b)]
                for client in clients:
                    await client.connect()
                await asyncio.gather(*(c.subscribe(topic) for c in clients))
                await until(lambda: _count_async(http, a, b, topic, 4), what="4 subscribers")
                await asyncio.gather(*(c.unsubscribe(topic) for c in clients))
                await until(
                    lambda: len(hook_events(watch, topic)) >= 2,
                    what="the two hooks",
                )
                await asyncio.sleep(2 * TTL)  # room for a wrong extra one to show up
                events = hook_events(watch, topic)
                assert [kind for kind, _ in events] == ["occupied", "vacated"], events
                assert events[0][1] == events[1][1]  # the node that owns it stops it
                for client in clients:
                    await client.close()

    run(main(), timeout=90)


async def _count_async(http, a, b, topic, n):
    return await occupancy(http, a, topic) == n and await occupancy(http, b, topic) == n


def test_a_killed_owner_hands_its_occupied_topic_over(fanwire_server, redis_server):
    """The node that ran ``on_occupied`` dies while the other still has a subscriber:
    the survivor runs ``on_occupied`` (its producer takes over), once."""
    a, b = nodes(fanwire_server, redis_server.url, **HOOK_APP)

    async def main():
        async with room(a, b) as (http, topic):
            await create_everywhere(http, "hooks", a, b)
            async with WSClient(b.ws_url) as watch, WSClient(b.ws_url) as stays:
                await watch.subscribe("hooks")
                first = WSClient(a.ws_url)
                await first.connect()
                await first.subscribe(topic)  # a owns the topic
                await until(
                    lambda: len(hook_events(watch, topic)) == 1,
                    what="on_occupied on a",
                )
                await stays.subscribe(topic)
                a_pid = hook_events(watch, topic)[0][1]
                a.kill()
                await until(
                    lambda: len(hook_events(watch, topic)) >= 2,
                    timeout=10 * TTL,
                    what="b taking the topic over",
                )
                await asyncio.sleep(2 * TTL)
                events = hook_events(watch, topic)
                assert [kind for kind, _ in events] == ["occupied", "occupied"], events
                assert events[1][1] != a_pid
                await stays.unsubscribe(topic)  # now b, the owner, runs on_vacated
                await until(
                    lambda: len(hook_events(watch, topic)) == 3,
                    what="on_vacated on b",
                )
                assert hook_events(watch, topic)[2] == ("vacated", events[1][1])
                await first.close()

    run(main(), timeout=90)

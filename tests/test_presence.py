"""Occupancy and presence on one server (PROTOCOL.md, "Presence and occupancy").

Counts and members over REST and both transports, join/leave notices, a member leaving for
every way its subscription ends, the bounds of ``info``, and the occupancy hooks (through
``tests/presence_app.py``, whose hooks publish to the topic ``hooks``).
"""

import contextlib
import itertools
import os
from pathlib import Path

import httpx
import pytest
from redis_support import until

from fanwire.testing.aio import run
from fanwire.testing.clients import SSEClient, WSClient

_names = itertools.count(1)
HOOK_APP = {"app": "presence_app:create", "factory": True, "app_dir": str(Path(__file__).parent)}


@pytest.fixture(scope="module")
def server(fanwire_module_server):
    return fanwire_module_server(env={"FANWIRE_DEMO_RATE": "0"}, **HOOK_APP)


def new_topic(srv, prefix="room"):
    name = f"{prefix}{os.getpid()}-{next(_names)}"
    assert httpx.post(srv.url + "/topics", json={"name": name}, trust_env=False).status_code == 201
    return name


def http(srv):
    return httpx.AsyncClient(base_url=srv.url, timeout=10, trust_env=False)


async def ask(ws, kind, topic):
    """A WebSocket ``occupancy`` or ``presence`` request; its answer."""
    rid = f"{kind}-{next(_names)}"
    start = len(ws.messages)
    await ws.send({"type": kind, "topic": topic, "request_id": rid})
    return await ws.recv_until(lambda m: m.get("request_id") == rid, start=start)


async def ask_raw(ws, request):
    rid = f"raw-{next(_names)}"
    start = len(ws.messages)
    await ws.send({**request, "request_id": rid})
    return await ws.recv_until(lambda m: m.get("request_id") == rid, start=start)


async def listed(client, topic):
    rows = (await client.get("/topics")).json()["topics"]
    return next(r["subscribers"] for r in rows if r["name"] == topic)


async def members(client, topic):
    body = (await client.get(f"/topics/{topic}/presence")).json()
    assert body["count"] == len(body["members"])
    return body["members"]


def test_occupancy_counts_connections_on_both_transports(server):
    topic = new_topic(server)

    async def main():
        async with http(server) as client, WSClient(server.ws_url) as ws:
            assert await listed(client, topic) == 0
            await ws.subscribe(topic)
            async with SSEClient(server.url, topics=[topic]) as sse:
                await sse.read_until(lambda c: c.frames)
                assert await listed(client, topic) == 2
                answer = await ask(ws, "occupancy", topic)
                answer.pop("_received_at", None)  # the test client's own note
                assert answer == {
                    "type": "occupancy",
                    "topic": topic,
                    "subscribers": 2,
                    "request_id": answer["request_id"],
                }
            await until(lambda: _is(listed(client, topic), 1), what="the SSE client gone")
            await ws.unsubscribe(topic)
            assert (await ask(ws, "occupancy", topic))["subscribers"] == 0
            assert await listed(client, topic) == 0
            missing = await ask(ws, "occupancy", "nosuchtopic")
            assert missing["type"] == "error" and missing["code"] == "TOPIC_NOT_FOUND"

    run(main(), timeout=60)


async def _is(pending, value):
    return await pending == value


def test_members_notices_and_queries_on_both_transports(server):
    topic = new_topic(server)

    async def main():
        async with (
            http(server) as client,
            WSClient(server.ws_url) as watcher,
            WSClient(server.ws_url) as member,
        ):
            await watcher.request({"type": "subscribe", "topic": topic, "join_leave": True})
            sse_watch = SSEClient(server.url, topics=[topic], params={"join_leave": "1"})
            await sse_watch.connect()
            await sse_watch.read_until(lambda c: c.frames or True)
            info = {"name": "Ada", "color": "#f80"}
            await member.request({"type": "subscribe", "topic": topic, "presence": info})
            join = await watcher.recv_until(lambda m: m.get("message") == "join")
            assert join["type"] == "info" and join["topic"] == topic
            who = join["member"]
            assert who["client_id"] == member.client_id
            assert who["user"] is None and who["info"] == info
            assert isinstance(who["joined_at"], float)
            frame = await sse_watch.read_until_event("join")
            assert frame.data == {"topic": topic, "member": who}
            assert await members(client, topic) == [who]
            metrics = (await client.get("/metrics")).text
            assert f'fanwire_topic_presence{{topic="{topic}"}} 1.0' in metrics
            assert f'fanwire_topic_occupancy{{topic="{topic}"}} 3.0' in metrics
            assert "fanwire_subscriber_queue_fill_bucket" in metrics
            answer = await ask(watcher, "presence", topic)
            assert answer["type"] == "presence" and answer["members"] == [who]
            # an SSE member (presence=1): no info
            async with SSEClient(server.url, topics=[topic], params={"presence": "1"}) as sse:
                await sse.read_until(lambda c: c.frames or True)
                second = await watcher.recv_until(
                    lambda m: m.get("message") == "join" and m["member"] != who
                )
                assert second["member"]["info"] is None
                assert len(await members(client, topic)) == 2
            left = await watcher.recv_until(lambda m: m.get("message") == "leave")
            assert left["member"] == second["member"]  # the SSE client went away
            await member.unsubscribe(topic)
            left = await watcher.recv_until(
                lambda m: m.get("message") == "leave" and m["member"] == who
            )
            frame = await sse_watch.read_until_event("leave")
            assert await members(client, topic) == []
            # a subscription that did not ask gets no notices
            assert not [m for m in member.messages if m.get("message") in ("join", "leave")]
            await sse_watch.close()

    run(main(), timeout=60)


def test_a_member_leaves_when_its_websocket_goes(server):
    topic = new_topic(server)

    async def main():
        async with http(server) as client, WSClient(server.ws_url) as watcher:
            await watcher.request({"type": "subscribe", "topic": topic, "join_leave": True})
            member = WSClient(server.ws_url)
            await member.connect()
            await member.request({"type": "subscribe", "topic": topic, "presence": True})
            await watcher.recv_until(lambda m: m.get("message") == "join")
            await member.close()
            left = await watcher.recv_until(lambda m: m.get("message") == "leave")
            assert left["member"]["client_id"] == member.client_id
            assert await members(client, topic) == []
            assert await listed(client, topic) == 1

    run(main(), timeout=60)


def test_a_slow_consumer_closed_leaves(server):
    topic = new_topic(server)
    pad = "x" * 30_000

    async def main():
        async with http(server) as client, WSClient(server.ws_url) as watcher:
            await watcher.request({"type": "subscribe", "topic": topic, "join_leave": True})
            slow = SSEClient(
                server.url,
                topics=[topic],
                params={"presence": "1"},
                receive_buffer=65536,
                stalled=True,
                policy="disconnect",
                queue_size=10,
            )
            await slow.connect()
            await watcher.recv_until(lambda m: m.get("message") == "join")
            for n in range(400):
                await client.post(f"/topics/{topic}/messages", json={"data": {"n": n, "p": pad}})
                if any(m.get("message") == "leave" for m in watcher.messages):
                    break
            await watcher.recv_until(lambda m: m.get("message") == "leave", timeout=30)
            assert await members(client, topic) == []
            stats = (await client.get("/stats")).json()
            assert stats["slow_consumer_count"] >= 1  # the console's count of them
            await slow.close()

    run(main(), timeout=90)


def test_members_of_a_deleted_topic_leave(server):
    topic = new_topic(server)
    other = new_topic(server)

    async def main():
        async with http(server) as client:
            # one stream of two topics: it goes on with the other when one is deleted
            params = {"presence": "1"}
            async with SSEClient(server.url, topics=[topic, other], params=params) as sse:
                await until(lambda: members(client, topic), what="the member")
                assert (await client.delete(f"/topics/{topic}")).status_code == 204
                await sse.read_until_event("topic_deleted")
                assert (await client.post("/topics", json={"name": topic})).status_code == 201
                assert await members(client, topic) == []
                assert await listed(client, topic) == 0
                assert len(await members(client, other)) == 1

    run(main(), timeout=60)


def test_presence_info_is_bounded_and_validated(server):
    topic = new_topic(server)

    async def main():
        async with http(server) as client, WSClient(server.ws_url) as ws:
            for bad in ("yes", 1, ["a"], {"pad": "x" * 1020}):
                reply = await ws.request(
                    {"type": "subscribe", "topic": topic, "presence": bad}, check=False
                )
                assert reply["type"] == "error" and reply["code"] == "INVALID_MESSAGE", bad
            reply = await ws.request(
                {"type": "subscribe", "topic": topic, "join_leave": "yes"}, check=False
            )
            assert reply["code"] == "INVALID_MESSAGE"
            assert await listed(client, topic) == 0  # nothing was subscribed
            fits = {"pad": "x" * 1000}  # 1,012 bytes encoded
            await ws.request({"type": "subscribe", "topic": topic, "presence": fits})
            assert [m["info"] for m in await members(client, topic)] == [fits]
            for request, code in (
                ({"type": "occupancy"}, "INVALID_MESSAGE"),
                ({"type": "presence", "topic": 7}, "INVALID_MESSAGE"),
                ({"type": "presence", "topic": "bad name"}, "INVALID_TOPIC"),
                ({"type": "occupancy", "topic": "x" * 256}, "INVALID_TOPIC"),
            ):
                reply = await ask_raw(ws, request)
                assert reply["type"] == "error" and reply["code"] == code, request
            nested = "[" * 300 + "]" * 300  # deeper than orjson encodes
            start = len(ws.messages)
            await ws.send_raw(
                f'{{"type": "subscribe", "topic": "{topic}", "presence": {{"a": {nested}}}}}'
            )
            reply = await ws.recv_until(lambda m: m.get("type") == "error", start=start)
            assert reply["code"] == "INVALID_MESSAGE"
            bad = await client.get("/stream", params={"topic": topic, "presence": "2"})
            assert bad.status_code == 400
            assert bad.json()["error"] == "INVALID_MESSAGE"
            missing = await client.get("/topics/nosuchtopic/presence")
            assert missing.status_code == 404
            assert (await client.get("/topics/bad%20name/presence")).status_code == 400

    run(main(), timeout=60)


def test_hooks_fire_once_per_transition(server):
    topic = new_topic(server)

    async def main():
        async with http(server) as client:
            async with WSClient(server.ws_url) as a, WSClient(server.ws_url) as b:
                await a.subscribe(topic)
                await b.subscribe(topic)
                await until(lambda: _has_topic(client, "hooks"), what="the hooks topic")
                async with WSClient(server.ws_url) as watch:
                    await watch.subscribe("hooks", last_n=100)
                    await watch.recv_until(
                        lambda m: m.get("type") == "event" and m["data"]["topic"] == topic
                    )
                    await a.unsubscribe(topic)
                    await b.unsubscribe(topic)
                    await a.subscribe(topic)
                    await a.unsubscribe(topic)
                    await watch.recv_until(
                        lambda m: (
                            m.get("type") == "event"
                            and m["data"]["topic"] == topic
                            and m["data"]["hook"] == "vacated"
                            and len(_hooks(watch, topic)) == 4
                        )
                    )
                    assert _hooks(watch, topic) == ["occupied", "vacated", "occupied", "vacated"]

    run(main(), timeout=60)


def _hooks(ws, topic):
    return [e["data"]["hook"] for e in ws.events if e["data"]["topic"] == topic]


async def _has_topic(client, name):
    return name in {t["name"] for t in (await client.get("/topics")).json()["topics"]}


def test_demo_producer_runs_only_while_events_is_occupied(fanwire_server):
    srv = fanwire_server(env={"FANWIRE_DEMO_RATE": "50"})

    async def main():
        async with http(srv) as client:

            async def events_messages():
                rows = (await client.get("/topics")).json()["topics"]
                return next((r["messages"] for r in rows if r["name"] == "events"), None)

            await until(lambda: _not_none(events_messages()), what="the events topic")
            await _sleep(1.0)
            assert await events_messages() == 0  # nobody listens: no tick
            async with SSEClient(srv.url, topics=["events"]) as sse:
                await sse.read_messages(5)
            await until(lambda: _steady(events_messages), what="the producer stopping")
            stopped = await events_messages()
            await _sleep(1.0)
            assert await events_messages() == stopped

    run(main(), timeout=60)


async def _not_none(pending):
    return await pending is not None


async def _sleep(seconds):
    import asyncio

    await asyncio.sleep(seconds)


async def _steady(read):
    first = await read()
    await _sleep(0.3)
    return first == await read()


SECRET = "s3cret-for-presence-tests-0123456789"


@pytest.fixture(scope="module")
def auth_server(fanwire_module_server):
    env = {
        "FANWIRE_DEMO_RATE": "0",
        "FANWIRE_AUTH_ENABLED": "true",
        "FANWIRE_JWT_SECRET": SECRET,
    }
    srv = fanwire_module_server(env=env)
    admin = {"Authorization": f"Bearer {_token(admin=True)}"}
    for name in ("orders.eu", "secret"):
        httpx.post(srv.url + "/topics", json={"name": name}, headers=admin, trust_env=False)
    return srv


def _token(**claims):
    import jwt

    return jwt.encode(claims, SECRET, algorithm="HS256")


def test_only_those_who_may_subscribe_see_presence_and_occupancy(auth_server):
    token = _token(sub="alice", subscribe=["orders.*"])
    bearer = {"Authorization": f"Bearer {token}"}

    async def main():
        async with (
            http(auth_server) as client,
            WSClient(auth_server.ws_url, params={"access_token": token}) as ws,
        ):
            await ws.request({"type": "subscribe", "topic": "orders.eu", "presence": True})
            for kind in ("occupancy", "presence"):
                denied = await ask(ws, kind, "secret")
                assert denied["type"] == "error" and denied["code"] == "FORBIDDEN", kind
            assert (await ask(ws, "occupancy", "orders.eu"))["subscribers"] == 1
            [who] = (await ask(ws, "presence", "orders.eu"))["members"]
            assert who["user"] == "alice" and who["client_id"] == ws.client_id
            allowed = await client.get("/topics/orders.eu/presence", headers=bearer)
            assert allowed.status_code == 200 and allowed.json()["members"] == [who]
            forbidden = await client.get("/topics/secret/presence", headers=bearer)
            assert forbidden.status_code == 403
            assert (await client.get("/topics/orders.eu/presence")).status_code == 401
            rows = (await client.get("/topics", headers=bearer)).json()["topics"]
            seen = {r["name"]: r["subscribers"] for r in rows}
            assert seen == {"orders.eu": 1, "secret": None}
            rows = (await client.get("/topics")).json()["topics"]
            assert {r["subscribers"] for r in rows} == {None}

    run(main(), timeout=60)


def test_python_api_hooks_sync_and_async_and_every_end(fanwire_broker):
    """In process: ``broker.occupancy``/``presence``/``join`` and both kinds of hook, with
    members leaving on unsubscribe, close and shutdown."""
    import asyncio

    broker = fanwire_broker
    seen = []

    async def occupied(topic):
        await asyncio.sleep(0)
        seen.append(("occupied", topic))

    broker.on_occupied("prices.*", occupied)
    broker.on_vacated("prices.*", lambda topic: seen.append(("vacated", topic)))
    broker.on_vacated("other", lambda topic: seen.append(("wrong", topic)))

    async def main():
        broker.create_topic("prices.eu")
        a = broker.subscribe("prices.eu", mode="ws")
        broker.join(a, "prices.eu", client_id="a", user="ada", info={"x": 1})
        b = broker.subscribe("prices.eu", mode="sse")
        broker.join(b, "prices.eu", client_id="b", info={}, join_leave=True)
        await asyncio.sleep(0.05)  # the async hook runs as a task
        assert seen == [("occupied", "prices.eu")]
        assert broker.occupancy("prices.eu") == 2
        assert [(m["client_id"], m["user"], m["info"]) for m in broker.presence("prices.eu")] == [
            ("a", "ada", {"x": 1}),
            ("b", None, None),
        ]
        a.remove("prices.eu")
        batch = await b.next_batch(timeout=5)
        assert b"event: leave" in batch and b'"client_id":"a"' in batch
        assert [m["client_id"] for m in broker.presence("prices.eu")] == ["b"]
        b.close()
        assert broker.occupancy("prices.eu") == 0 and broker.presence("prices.eu") == []
        assert seen == [("occupied", "prices.eu"), ("vacated", "prices.eu")]
        c = broker.subscribe("prices.eu", mode="ws")
        broker.join(c, "prices.eu", client_id="c", info={})
        broker.shutdown()
        with contextlib.suppress(StopAsyncIteration):
            while await c.next_batch(timeout=5) is not None:
                pass
        assert broker.presence("prices.eu") == [] and broker.occupancy("prices.eu") == 0
        # c's async on_occupied was still to run: on_vacated waited for it
        for _ in range(100):
            if len(seen) == 4:
                break
            await asyncio.sleep(0.02)
        assert seen == [("occupied", "prices.eu"), ("vacated", "prices.eu")] * 2

    run(main(), timeout=30)


def test_deleting_a_topic_of_many_listening_members(server):
    """Every member of a topic gets every later member's join once, in order; deleting
    the topic then tells each of them, the DELETE answers 204. (The members' leaves used
    to cascade: each leave made the next listener take, see its own end and leave, one
    stack frame deeper each time, and past ~170 members the DELETE failed with a 500.)"""
    topic = new_topic(server)
    count = 220

    async def main():
        import asyncio

        clients = [WSClient(server.ws_url) for _ in range(count)]
        try:
            for ws in clients:
                await ws.connect()
                await ws.request(
                    {"type": "subscribe", "topic": topic, "presence": True, "join_leave": True}
                )
            ids = [ws.client_id for ws in clients]
            for n, ws in enumerate(clients):
                want = ids[n:]
                await ws.recv_until(
                    lambda m, last=want[-1]: (
                        m.get("message") == "join" and m["member"]["client_id"] == last
                    ),
                    timeout=60,
                )
                joins = [m["member"]["client_id"] for m in ws.infos("join")]
                assert joins == want
            async with http(server) as client:
                assert len(await members(client, topic)) == count
                assert (await client.delete(f"/topics/{topic}")).status_code == 204
                for ws in clients:
                    await ws.recv_until(lambda m: m.get("message") == "topic_deleted")
                assert (await client.get(f"/topics/{topic}/presence")).status_code == 404
        finally:
            await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)

    run(main(), timeout=240)


def test_join_and_leave_keep_their_place_among_messages(server):
    """A notice comes after the topic's messages published before it and before the ones
    published after it, on both transports."""
    topic = new_topic(server)

    async def main():
        async with (
            http(server) as client,
            WSClient(server.ws_url) as watcher,
            WSClient(server.ws_url) as member,
            SSEClient(server.url, topics=[topic], params={"join_leave": "1"}) as sse,
        ):
            await watcher.request({"type": "subscribe", "topic": topic, "join_leave": True})
            await until(lambda: _is(listed(client, topic), 2), what="both watchers")

            async def post(n):
                url = f"/topics/{topic}/messages"
                assert (await client.post(url, json={"data": {"n": n}})).status_code == 202

            await post(1)
            await member.request({"type": "subscribe", "topic": topic, "presence": True})
            await post(2)
            await member.unsubscribe(topic)
            await post(3)
            want = [1, "join", 2, "leave", 3]
            await watcher.recv_until(lambda m: m.get("type") == "event" and m["data"]["n"] == 3)
            ws_seen = [
                m["data"]["n"] if m["type"] == "event" else m["message"]
                for m in watcher.messages
                if m.get("type") == "event" or m.get("message") in ("join", "leave")
            ]
            assert ws_seen == want
            await sse.read_until(lambda c: any(f.data["data"]["n"] == 3 for f in c.messages))
            sse_seen = [
                f.data["data"]["n"] if f.is_message else f.event
                for f in sse.frames
                if f.is_message or f.event in ("join", "leave")
            ]
            assert sse_seen == want

    run(main(), timeout=60)


@pytest.fixture(scope="module")
def asgi_sse_server(fanwire_module_server):
    """SSE on the ASGI path (the core does not take the connection over)."""
    return fanwire_module_server(env={"FANWIRE_DEMO_RATE": "0", "FANWIRE_NATIVE_SSE": "false"})


@pytest.mark.parametrize("path", ["native", "asgi"])
def test_an_sse_member_is_told_its_client_id(path, request):
    """``presence=1``: the first frame after ``retry:`` is ``event: info`` ``connected``
    with the member's client_id; a stream without presence gets no such frame."""
    server = request.getfixturevalue("server" if path == "native" else "asgi_sse_server")
    topic = new_topic(server)

    async def main():
        async with http(server) as client:
            params = {"presence": "1"}
            async with SSEClient(server.url, topics=[topic], params=params) as sse:
                await sse.read_until(lambda c: c.of_event("info"))
                first = next(f for f in sse.frames if f.retry is None)
                assert first.event == "info" and first.id == ""
                assert first.data == {"message": "connected", "client_id": ANY_ID}
                assert [m["client_id"] for m in await members(client, topic)] == [
                    first.data["client_id"]
                ]
                assert not first.is_message
            async with SSEClient(server.url, topics=[topic]) as plain:
                url = f"/topics/{topic}/messages"
                assert (await client.post(url, json={"data": 1})).status_code == 202
                await plain.read_until(lambda c: c.messages)
                assert plain.of_event("info") == []

    run(main(), timeout=60)


class _AnyId:
    def __eq__(self, other):
        return isinstance(other, str) and len(other) == 16

    def __repr__(self):
        return "<a 16-character client id>"


ANY_ID = _AnyId()


@pytest.mark.parametrize("policy", ["drop_oldest", "disconnect"])
def test_a_stalled_join_leave_listener_holds_a_bounded_window(server, policy):
    """Notices count toward a listener's queue like messages: a listener that stopped
    reading while members churn has its policy applied (drop_oldest: the oldest dropped,
    counted and told with ``messages_dropped``, every notice either delivered or counted;
    disconnect: closed as a slow consumer) instead of the server holding every notice."""
    topic = new_topic(server)
    queue = 10

    async def main():
        async with (
            http(server) as client,
            WSClient(server.ws_url, receive_buffer=4096, max_queue=1) as slow,
            WSClient(server.ws_url) as churn,
        ):
            await slow.request(
                {
                    "type": "subscribe",
                    "topic": topic,
                    "join_leave": True,
                    "policy": policy,
                    "queue_size": queue,
                }
            )
            slow.stall()
            cycles = 0

            # Each notice carries the member's 900-byte info: the kernel's send buffer in
            # front of the listener (up to 4 MiB on loopback, where the core owns the
            # socket) fills within seconds, and the listener's own window after it.
            info = {"pad": "x" * 900}

            async def bounded():
                nonlocal cycles
                for _ in range(100):
                    await churn.request({"type": "subscribe", "topic": topic, "presence": info})
                    await churn.unsubscribe(topic)
                    cycles += 1
                if policy == "disconnect":
                    return await listed(client, topic) == 0  # the listener was cut off
                return (await client.get("/stats")).json()["topics"][topic]["dropped_count"] > 0

            await until(bounded, what=f"the stalled listener's {policy}", timeout=120)
            if policy == "disconnect":
                return
            slow.resume()
            url = f"/topics/{topic}/messages"
            assert (await client.post(url, json={"data": {"n": "after"}})).status_code == 202
            await slow.recv_until(
                lambda m: m.get("type") == "event" and m["data"]["n"] == "after", timeout=60
            )
            got = [m for m in slow.messages if m.get("message") in ("join", "leave")]
            told = sum(m["dropped"] for m in slow.infos("messages_dropped"))
            assert told > 0
            assert len(got) + told == 2 * cycles  # each notice delivered, or dropped and told

    run(main(), timeout=240)

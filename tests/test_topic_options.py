"""Topic options (PROTOCOL.md, "Topic options"): per-pattern resolution, refusal of bad
values at start, ``GET /topics/{name}``, and each option applied on a real server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import orjson
import pytest

from fanwire import Broker, InvalidMessage, Policy, Settings, TopicOptions
from fanwire.testing.aio import run
from fanwire.testing.clients import SSEClient, WSClient
from fanwire.topics import TopicRules

TOPICS = {
    "chat.*": {"retention": 3, "auto_create": True, "max_payload": 100},
    "chat.vip.*": {"retention": 5},
    "feed.*": {"ws_policy": "disconnect", "ws_queue_size": 7, "sse_queue_size": 9},
    "aged.*": {"max_age": 1.0, "auto_create": True},
}


@pytest.fixture(scope="module")
def server(fanwire_module_server):
    return fanwire_module_server(
        env={"FANWIRE_DEMO_RATE": "0", "FANWIRE_TOPICS": orjson.dumps(TOPICS).decode()}
    )


def _name(prefix: str) -> str:
    return f"{prefix}{os.getpid()}-{time.monotonic_ns()}"


def test_the_most_specific_pattern_wins():
    rules = Settings(
        retention=10,
        topics={
            "*": TopicOptions(retention=1),
            "a.*": TopicOptions(retention=2),
            "a.b.*": TopicOptions(retention=3),
            "a.*.c": TopicOptions(retention=4),  # 4 literal characters, like a.b.*
            "a.b.c": TopicOptions(retention=5),  # an exact name beats every pattern
            "x*y": TopicOptions(retention=6),  # listed before its tie x*y* ...
            "x*y*": TopicOptions(retention=7),  # ... but it has more stars
        },
    ).topic_rules()
    got = {n: rules.resolve(n).retention for n in ("zzz", "a.q", "a.b.q", "a.b.c", "xay")}
    assert got == {"zzz": 1, "a.q": 2, "a.b.q": 3, "a.b.c": 5, "xay": 6}
    # a.b.* and a.*.c have as many literal characters and stars: the first listed wins.
    assert rules.resolve("a.b.x.c").retention == 3


def test_unset_options_take_the_server_defaults_not_a_less_specific_pattern():
    rules = Settings(
        max_payload=500, topics={"chat.*": {"max_payload": 50}, "chat.vip.*": {"retention": 5}}
    ).topic_rules()
    vip = rules.resolve("chat.vip.1")
    assert (vip.retention, vip.max_payload, vip.auto_create) == (5, 500, False)
    plain = rules.resolve("other")
    assert plain.dedupe_window == 300.0 and plain.max_age is None and plain.idle_ttl is None


def test_create_topic_options_win_over_the_patterns():
    async def main():
        broker = Broker(retention=10, topics={"t.*": TopicOptions(retention=4)})
        broker.start()
        try:
            assert broker.create_topic("t.1", retention=2, max_payload=10)
            assert broker.create_topic("t.2")
            assert broker.topic_options("t.1").retention == 2
            assert broker.topic_options("t.2").retention == 4
            for i in range(5):
                broker.publish("t.1", i)
                broker.publish("t.2", i)
            retained = {row.name: row for row in broker._core.topic_stats()}
            assert (retained["t.1"].retained, retained["t.2"].retained) == (2, 4)
            with pytest.raises(InvalidMessage, match="retention"):
                broker.create_topic("t.3", retention=0)
            with pytest.raises(InvalidMessage, match="nope"):
                broker.create_topic("t.3", nope=1)
            assert not broker.has_topic("t.3")
            # An existing topic keeps its options: create_topic answers False.
            assert broker.create_topic("t.1", retention=9) is False
            assert broker.topic_options("t.1").retention == 2
        finally:
            broker.close()

    run(main())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{"chat.*": {"retention": 0}}', "topics.chat.*.retention"),
        ('{"chat.*": {"sse_policy": "sometimes"}}', "topics.chat.*.sse_policy"),
        ('{"chat.*": {"max_age": -1}}', "topics.chat.*.max_age"),
        ('{"chat.*": {"retension": 5}}', "topics.chat.*.retension"),
        ('{"chat room": {"retention": 5}}', "chat room"),
        ("not json", "topics"),
        ('{"px": {"cache": true}}', "cache needs a conflate_key"),
        ('{"px": {"ws_policy": "conflate"}}', "ws_policy conflate needs a conflate_key"),
        ('{"px": {"conflate_key": "a b"}}', "topics.px.conflate_key"),
        ("FANWIRE_WS_POLICY=conflate", "conflate is a topic option"),
    ],
)
def test_bad_topic_options_are_refused_at_start(value, expected):
    env = {**os.environ, "FANWIRE_DEMO_RATE": "0"}
    name, _, value = value.rpartition("=") if value.startswith("FANWIRE_") else ("", "", value)
    env[name or "FANWIRE_TOPICS"] = value
    done = subprocess.run(
        [sys.executable, "-m", "fanwire", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "bad settings" in done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr


def test_get_topic_shows_the_effective_options(http):
    name = _name("chat.vip.")
    assert http.get(f"/topics/{name}").status_code == 404
    assert http.get("/topics/bad%20name").status_code == 400
    assert http.post("/topics", json={"name": name}).status_code == 201
    http.post(f"/topics/{name}/messages", json={"data": 1})
    body = http.get(f"/topics/{name}").json()
    assert body == {
        "name": name,
        "subscribers": 0,
        "messages": 1,
        "options": {
            "retention": 5,
            "max_age": None,
            "idle_ttl": None,
            "auto_create": False,
            "max_payload": 64 * 1024,
            "dedupe_window": 300.0,
            "sse_policy": "disconnect",
            "sse_queue_size": 100,
            "ws_policy": "drop_oldest",
            "ws_queue_size": 1000,
            "conflate_key": None,
            "cache": False,
        },
    }
    feed = _name("feed.")
    http.post("/topics", json={"name": feed})
    options = http.get(f"/topics/{feed}").json()["options"]
    assert (options["ws_policy"], options["ws_queue_size"], options["sse_queue_size"]) == (
        "disconnect",
        7,
        9,
    )


def test_auto_create_retention_and_max_payload_per_topic(server, http):
    chat = _name("chat.")
    for i in range(5):  # chat.* is created on first use and keeps 3 messages
        assert http.post(f"/topics/{chat}/messages", json={"data": i}).status_code == 202
    assert http.get(f"/topics/{chat}").json()["options"]["retention"] == 3
    too_big = http.post(f"/topics/{chat}/messages", json={"data": "x" * 100})
    assert too_big.status_code == 413
    # Other topics keep the server's defaults: no auto_create, 64 KiB payloads.
    other = _name("plain")
    assert http.post(f"/topics/{other}/messages", json={"data": 1}).status_code == 404
    http.post("/topics", json={"name": other})
    assert http.post(f"/topics/{other}/messages", json={"data": "x" * 100}).status_code == 202

    async def main():
        async with SSEClient(server.url, topics=[chat], last_n=3) as sse:
            replay = await sse.read_messages(3)
            assert [f.data["data"] for f in replay] == [2, 3, 4]
        async with SSEClient(server.url, topics=[chat], last_n=4, expect_status=400):
            pass
        async with WSClient(server.ws_url) as ws:
            error = await ws.subscribe(chat, last_n=4, check=False)
            assert error["code"] == "INVALID_MESSAGE"
            await ws.subscribe(chat, last_n=3)
            events = await ws.recv_events(3)
            assert [e["data"] for e in events] == [2, 3, 4]
            auto = _name("chat.")  # a WebSocket subscribe creates it too
            await ws.subscribe(auto)
        assert http.get(f"/topics/{auto}").status_code == 200

    run(main())


def test_max_age_resume_gets_gap_then_what_is_retained(server, http):
    topic = _name("aged.")
    old = [http.post(f"/topics/{topic}/messages", json={"data": i}).json() for i in range(3)]
    time.sleep(1.5)  # the three are older than max_age (1 s) now
    new = [http.post(f"/topics/{topic}/messages", json={"data": i}).json() for i in (3, 4)]
    new_ids = [m["message_id"] for m in new]

    async def main():
        since = old[0]["message_id"]
        async with SSEClient(server.url, topics=[topic], resume_from=since) as sse:
            await sse.read_messages(2)
            gap = sse.of_event("gap")
            assert [g.data for g in gap] == [{"topic": topic, "first_available": new_ids[0]}]
            assert sse.ids == new_ids
        async with SSEClient(server.url, topics=[topic], last_n=3) as sse:
            frames = await sse.read_messages(2)
            assert [f.data["data"] for f in frames] == [3, 4]
            assert sse.of_event("gap") == []
        async with WSClient(server.ws_url) as ws:
            await ws.subscribe(topic, since=since)
            await ws.recv_events(2)
            assert ws.event_ids() == new_ids
            gaps = ws.infos("gap")
            assert [(g["topic"], g["first_available"]) for g in gaps] == [(topic, new_ids[0])]

    run(main())


def test_broker_rules_need_the_core_defaults():
    with pytest.raises(ValueError, match="retention"):
        TopicRules(TopicOptions(), {})
    assert Policy.disconnect == TopicOptions(sse_policy="disconnect").sse_policy


def test_redis_nodes_apply_the_same_options(fanwire_server, redis_server):
    from redis_support import create_everywhere, http_client, node, topic_name

    env = {"topics": orjson.dumps({"r.*": {"retention": 3, "max_age": 1.0}}).decode()}
    a = node(fanwire_server, redis_server.url, **env)
    b = node(fanwire_server, redis_server.url, **env)
    topic = topic_name("r.")

    async def main():
        async with http_client() as http:
            await create_everywhere(http, topic, a, b)
            url = f"{a.url}/topics/{topic}/messages"
            old = [(await http.post(url, json={"data": i})).json()["message_id"] for i in range(5)]
            await asyncio.sleep(1.5)  # older than max_age now
            new = [(await http.post(url, json={"data": i})).json()["message_id"] for i in (5, 6)]
            options = (await http.get(f"{b.url}/topics/{topic}")).json()["options"]
            assert (options["retention"], options["max_age"]) == (3, 1.0)
            async with SSEClient(b.url, topics=[topic], last_n=4, expect_status=400):
                pass
            async with SSEClient(b.url, topics=[topic], resume_from=old[0]) as sse:
                await sse.read_messages(2)
                assert sse.ids == new
                assert [g.data["first_available"] for g in sse.of_event("gap")] == [new[0]]

    run(main(), timeout=60)


def test_redis_nodes_apply_the_options_given_to_create_topic(redis_server):
    from redis_support import until

    name = f"opt{os.getpid()}-{time.monotonic_ns()}"

    async def main():
        a = Broker(redis_url=redis_server.url)
        b = Broker(redis_url=redis_server.url)
        try:
            for broker in (a, b):
                await broker.astart()

            async def ready():
                return a.backend.ready and b.backend.ready

            await until(ready, what="both nodes connected")
            assert await a.acreate_topic(name, retention=2, conflate_key="symbol", cache=True)

            async def known():
                return b.has_topic(name)

            await until(known, what="b following the topic")
            options = b.topic_options(name)
            assert (options.retention, options.conflate_key, options.cache) == (2, "symbol", True)
            for n in range(5):
                await a.apublish(name, {"symbol": "s", "n": n})

            async def trimmed():
                rows = {row.name: row for row in b._core.topic_stats()}
                return rows[name].messages == 5 and rows[name].retained == 2

            await until(trimmed, what="b's ring holding the last 2")
            # A topic created anew without options takes the patterns' again, everywhere.
            assert await a.adelete_topic(name)
            assert await b.acreate_topic(name)
            await until(known, what="b following the new topic")
            assert a.topic_options(name).retention == 1000 == b.topic_options(name).retention
        finally:
            await a.aclose()
            await b.aclose()

    run(main(), timeout=60)

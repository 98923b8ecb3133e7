"""Keyed conflation and the last-value cache (PROTOCOL.md, "Keyed conflation") on a real
server: a client that stops reading and resumes gets the latest value of every key
published meanwhile plus every keyless message, told the exact count skipped; a fast
client beside it gets everything; a cache topic sends a new subscriber one message per
key, then live ones."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fanwire.testing.aio import run
from fanwire.testing.clients import SSEClient, WSClient

TOPICS = {
    "px.*": {"conflate_key": "symbol", "ws_policy": "conflate"},
    "last.*": {"conflate_key": "symbol", "cache": True},
}
PAD = "x" * 30_000
STALLED_WS = {"receive_buffer": 65536, "max_queue": 1}


@pytest.fixture(scope="module", params=["frames", "texts"])
def server(request, fanwire_module_server):
    env = {"FANWIRE_DEMO_RATE": "0", "FANWIRE_TOPICS": orjson.dumps(TOPICS).decode()}
    if request.param == "texts":  # one ASGI send per message instead of ready-made frames
        env["FANWIRE_WS_BATCH_FRAMES"] = "false"
    return fanwire_module_server(env=env)


def _name(prefix: str) -> str:
    return f"{prefix}{os.getpid()}-{time.monotonic_ns()}"


def _check_conflated(published, received, conflated):
    """``received`` (message ids) is ``published`` minus superseded messages only, with
    the latest of every key and every keyless message, and ``conflated`` counts the rest."""
    keys = {mid: key for mid, key in published}
    order = [mid for mid, _ in published]
    assert received == [m for m in order if m in set(received)]  # in id order, no dup
    skipped = [m for m in order if m not in set(received)]
    assert skipped, "the stalled client never fell behind"
    assert conflated == len(skipped)
    for mid in skipped:  # only superseded messages: a later one of its key was received
        assert keys[mid] is not None
        later = order[order.index(mid) + 1 :]
        assert any(keys[m] == keys[mid] and m in set(received) for m in later)
    latest = {key: mid for mid, key in published if key is not None}
    assert set(latest.values()) <= set(received)


async def _flood(http, topic, count):
    """``count`` messages on keys a..e, every 7th without a key: [(id, key or None)]."""
    published = []
    for n in range(count):
        key = None if n % 7 == 3 else "abcde"[n % 5]
        data = {"n": n, "pad": PAD} if key is None else {"symbol": key, "n": n, "pad": PAD}
        response = await http.post(f"/topics/{topic}/messages", json={"data": data})
        published.append((response.json()["message_id"], key))
    return published


def test_a_stalled_websocket_gets_the_latest_of_every_key(server):
    topic = _name("px.")

    async def main():
        async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=30) as http:
            await http.post("/topics", json={"name": topic})
            async with (
                WSClient(server.ws_url) as fast,
                WSClient(server.ws_url, **STALLED_WS) as slow,
            ):
                await fast.subscribe(topic, policy="drop_oldest")
                await slow.subscribe(topic)  # conflate: the topic's ws_policy
                slow.stall()
                published = await _flood(http, topic, 300)
                await fast.recv_events(len(published), timeout=60)
                slow.resume()
                last = published[-1][0]
                await slow.wait_for(lambda c: last in c.event_ids(), timeout=60, what="last")
                conflated = sum(n["conflated"] for n in slow.infos("messages_conflated"))
                assert all(n["topic"] == topic for n in slow.infos("messages_conflated"))
                assert slow.infos("messages_dropped") == []
                _check_conflated(published, slow.event_ids(topic), conflated)
                assert fast.event_ids(topic) == [m for m, _ in published]

    run(main(), timeout=180)


def test_a_stalled_sse_stream_gets_the_latest_of_every_key(server):
    topic = _name("px.")

    async def main():
        async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=30) as http:
            await http.post("/topics", json={"name": topic})
            slow = SSEClient(server.url, topics=[topic], policy="conflate", receive_buffer=65536)
            async with slow:
                await slow.read_until(lambda c: c.retry is not None)
                slow.stall()
                published = await _flood(http, topic, 300)
                slow.resume()
                last = published[-1][0]
                await slow.read_until(lambda c: last in c.ids, timeout=60)
                notices = slow.of_event("conflated")
                assert all(n.data["topic"] == topic for n in notices)
                assert slow.of_event("gap") == []
                conflated = sum(n.data["conflated"] for n in notices)
                _check_conflated(published, slow.ids, conflated)

    run(main(), timeout=180)


def _conflated_metrics(text: str, topic: str) -> tuple[float, float]:
    """``fanwire_conflated_total`` and ``topic``'s ``fanwire_topic_conflated_total``."""
    total = per_topic = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "fanwire_conflated_total":
                total += sample.value
            elif sample.name == "fanwire_topic_conflated_total":
                per_topic += sample.value if sample.labels["topic"] == topic else 0
    return total, per_topic


def test_stats_and_metrics_count_what_slow_clients_were_told_was_conflated(server):
    """``conflated_count`` (the console's conflation line) rises by exactly the counts
    the stalled WebSocket and SSE clients were told; /metrics counts them server-wide
    and for the topic."""
    topic = _name("px.")

    async def main():
        async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=30) as http:
            await http.post("/topics", json={"name": topic})
            before = (await http.get("/stats")).json()
            metrics_before = _conflated_metrics((await http.get("/metrics")).text, topic)
            sse = SSEClient(server.url, topics=[topic], policy="conflate", receive_buffer=65536)
            async with WSClient(server.ws_url, **STALLED_WS) as ws, sse:
                await ws.subscribe(topic)  # conflate: the topic's ws_policy
                await sse.read_until(lambda c: c.retry is not None)
                ws.stall()
                sse.stall()
                published = await _flood(http, topic, 300)
                ws.resume()
                sse.resume()
                last = published[-1][0]
                await ws.wait_for(lambda c: last in c.event_ids(), timeout=60, what="last")
                await sse.read_until(lambda c: last in c.ids, timeout=60)
                told_ws = sum(n["conflated"] for n in ws.infos("messages_conflated"))
                told_sse = sum(n.data["conflated"] for n in sse.of_event("conflated"))
                assert told_ws > 0 and told_sse > 0, "a stalled client never fell behind"
                after = (await http.get("/stats")).json()
                metrics_after = _conflated_metrics((await http.get("/metrics")).text, topic)
        told = told_ws + told_sse
        assert after["conflated_count"] - before["conflated_count"] == told
        assert metrics_after[0] - metrics_before[0] == told
        assert metrics_after[1] == told
        assert after["dropped_count"] == before["dropped_count"]  # skipped, not dropped

    run(main(), timeout=180)


def test_conflate_needs_a_topic_with_a_conflate_key(server):
    async def main():
        async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=30) as http:
            plain = _name("plain")
            await http.post("/topics", json={"name": plain})
            async with WSClient(server.ws_url) as ws:
                error = await ws.subscribe(plain, policy="conflate", check=False)
                assert error["code"] == "INVALID_MESSAGE"
            async with SSEClient(server.url, topics=[plain], policy="conflate", expect_status=400):
                pass

    run(main())


def test_a_cache_topic_sends_one_message_per_key_then_live_ones(server):
    topic = _name("last.")

    async def main():
        async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=30) as http:
            await http.post("/topics", json={"name": topic})
            url = f"/topics/{topic}/messages"
            ids = {}
            for symbol, price in (("a", 1), ("b", 1), (None, 0), ("a", 2), ("c", 1)):
                data = {"price": price} if symbol is None else {"symbol": symbol, "price": price}
                ids[(symbol, price)] = (await http.post(url, json={"data": data})).json()[
                    "message_id"
                ]
            cached = [ids[("b", 1)], ids[("a", 2)], ids[("c", 1)]]
            async with (
                WSClient(server.ws_url) as ws,
                SSEClient(server.url, topics=[topic]) as sse,
            ):
                await ws.subscribe(topic)
                await ws.recv_events(3)
                await sse.read_messages(3)
                live = (await http.post(url, json={"data": {"symbol": "a", "price": 3}})).json()
                await ws.recv_events(4)
                await sse.read_messages(4)
                await asyncio.sleep(0.3)  # nothing more may come
                assert ws.event_ids() == [*cached, live["message_id"]]
                assert sse.ids == [*cached, live["message_id"]]
                assert [e["data"]["price"] for e in ws.events] == [1, 2, 1, 3]

    run(main(), timeout=60)


def test_redis_nodes_conflate_and_cache_what_they_read(fanwire_server, redis_server):
    from redis_support import create_everywhere, http_client, node, topic_name

    env = {"topics": orjson.dumps(TOPICS).decode()}
    a = node(fanwire_server, redis_server.url, **env)
    b = node(fanwire_server, redis_server.url, **env)
    topic = topic_name("last.")

    async def main():
        async with http_client() as http:
            await create_everywhere(http, topic, a, b)
            ids = []
            for n, symbol in enumerate("abacb"):
                url = f"{a.url}/topics/{topic}/messages"
                body = {"data": {"symbol": symbol, "n": n}}
                ids.append((await http.post(url, json=body)).json()["message_id"])
            # b has read all five (its own subscriber's replay shows them) ...
            async with SSEClient(b.url, topics=[topic], last_n=5) as replay:
                await replay.read_messages(5)
            # ... and a new subscriber there gets the latest of each key: a2, c3, b4.
            async with WSClient(b.ws_url) as ws:
                await ws.subscribe(topic)
                await ws.recv_events(3)
                await asyncio.sleep(0.3)
                assert ws.event_ids() == [ids[2], ids[3], ids[4]]

    run(main(), timeout=60)


def test_the_demo_ticker_conflates_on_symbol_with_a_cache(fanwire_server):
    srv = fanwire_server(env={"FANWIRE_DEMO_RATE": "50"})

    async def main():
        async with httpx.AsyncClient(base_url=srv.url, trust_env=False, timeout=30) as http:

            async def ready():
                return (await http.get("/topics/events")).status_code == 200

            from redis_support import until

            await until(ready, what="the demo topic")
            options = (await http.get("/topics/events")).json()["options"]
            assert (options["conflate_key"], options["cache"]) == ("symbol", True)
            # The demo ticks only while someone listens (presence's on_occupied): a
            # first client starts it, a later one gets the cache.
            async with WSClient(srv.ws_url) as first_client:
                await first_client.subscribe("events")
                await first_client.recv_events(3)
                await asyncio.sleep(1.0)  # every symbol has ticked by now (50/s)
                async with WSClient(srv.ws_url) as ws:
                    await ws.subscribe("events")
                    first = await ws.recv_events(3)
                    symbols = [e["data"]["symbol"] for e in first]
                    assert len(set(symbols)) == len(symbols)  # the cache: one per symbol

    run(main(), timeout=60)

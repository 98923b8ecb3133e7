"""Streams for AI answers: ``fanwire.sse.events`` in a user's ``fastapi.sse`` routes, and
per-request topics ended by ``broker.end`` (``event: end``), against real servers (the
app of tests/ai_app.py under uvicorn; Redis from the plugin's fixture)."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest
from redis_support import create_everywhere, until, wait_topic

from fanwire.testing.aio import run
from fanwire.testing.clients import SSEClient, WSClient

HERE = Path(__file__).resolve().parent
ENV = {
    "FANWIRE_DEMO_RATE": "0",
    "FANWIRE_HEARTBEAT_INTERVAL": "0.5",
    "FANWIRE_SSE_QUEUE_SIZE": "1000",
}
_names = itertools.count(1)


def new_name() -> str:
    return f"ai{os.getpid()}-{next(_names)}"


@pytest.fixture(scope="module")
def app_server(fanwire_module_server):
    """tests/ai_app.py on one in-memory node (native SSE on for ``/stream``)."""
    return fanwire_module_server(env=ENV, app="ai_app:app", app_dir=str(HERE), name="ai_app")


@pytest.fixture(scope="module")
def asgi_server(fanwire_module_server):
    """The same app with ``/stream`` on the ASGI path (no native writer)."""
    env = {**ENV, "FANWIRE_NATIVE_SSE": "false"}
    return fanwire_module_server(env=env, app="ai_app:app", app_dir=str(HERE), name="ai_asgi")


def client(srv) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=srv.url, timeout=20, trust_env=False)


async def new_topic(http: httpx.AsyncClient) -> str:
    name = new_name()
    assert (await http.post("/topics", json={"name": name})).status_code == 201
    return name


async def publish(http: httpx.AsyncClient, topic: str, data, event=None) -> str:
    body = {"data": data} if event is None else {"data": data, "event": event}
    response = await http.post(f"/topics/{topic}/messages", json=body)
    assert response.status_code == 202, response.text
    return response.json()["message_id"]


async def body_to_end(http, path, *, method="GET", params=None, headers=None) -> str:
    """The whole body of a stream that the server ends (it must end: bounded wait)."""
    async with http.stream(method, path, params=params, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return (await asyncio.wait_for(response.aread(), 20)).decode()


def frames(body: str) -> list[dict[str, str]]:
    """SSE frames as field dicts (no comments, no ``retry``-only frame)."""
    out = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        fields.pop("", None)
        if block and not block.startswith((":", "retry:")):
            out.append(fields)
    return out


def fastapi_form(fields: dict[str, str]) -> str:
    """How fastapi.sse writes a frame of these fields (event, data, id)."""
    lines = [f"{k}: {fields[k]}" for k in ("event", "data", "id") if k in fields]
    return "\n".join(lines) + "\n\n"


# -- fanwire.sse.events in the user's routes ---------------------------------------------


def test_route_frames_are_those_of_stream_encoded_once(app_server):
    """A GET and a POST route yield exactly /stream's messages (the core's data line
    byte for byte, its id and event), then the end, and then the response ends."""

    async def main():
        async with client(app_server) as http:
            topic = await new_topic(http)
            await publish(http, topic, {"token": "Hel", "n": 1}, event="token")
            await publish(http, topic, ["lo", None, 2.5, "é\u2028"])
            await publish(http, topic, "plain")
            assert (await http.post(f"/end/{topic}")).status_code == 200
            native = await body_to_end(http, "/stream", params={"topic": topic, "last_n": 10})
            expected = frames(native)
            assert [f.get("event") for f in expected] == ["token", "message", "message", "end"]
            assert "id" not in expected[-1] and all("id" in f for f in expected[:-1])
            want = "".join(fastapi_form(f) for f in expected)
            for method in ("GET", "POST"):
                body = await body_to_end(
                    http, "/answers", method=method, params={"topic": topic, "last_n": 10}
                )
                assert body == want, method

    run(main())


def test_resume_after_every_position_no_duplicate_no_gap(app_server):
    async def main():
        async with client(app_server) as http:
            topic = await new_topic(http)
            ids = [await publish(http, topic, {"i": i}) for i in range(6)]
            await http.post(f"/end/{topic}")
            for k, last in enumerate(ids):
                body = await body_to_end(
                    http, "/answers", params={"topic": topic}, headers={"Last-Event-ID": last}
                )
                got = frames(body)
                assert [f.get("id") for f in got[:-1]] == ids[k + 1 :]
                assert [orjson.loads(f["data"])["data"]["i"] for f in got[:-1]] == list(
                    range(k + 1, 6)
                )
                assert got[-1]["event"] == "end"  # after the last id too: end again

    run(main())


def test_gap_notice_for_an_unknown_id_then_everything(app_server):
    async def main():
        async with client(app_server) as http:
            topic = await new_topic(http)
            ids = [await publish(http, topic, i) for i in range(3)]
            await http.post(f"/end/{topic}")
            body = await body_to_end(
                http, "/answers", params={"topic": topic}, headers={"Last-Event-ID": "1-1"}
            )
            got = frames(body)
            assert got[0]["event"] == "gap" and "id" not in got[0]
            assert orjson.loads(got[0]["data"])["topic"] == topic
            assert [f.get("id") for f in got[1:-1]] == ids
            assert got[-1]["event"] == "end"

    run(main())


def test_slow_route_client_is_disconnected_and_the_producer_never_waits(app_server):
    """A stalled reader of a route (policy disconnect, queue 5) is cut off with the
    SLOW_CONSUMER error; meanwhile every publish is answered and a reader of /stream
    gets every message."""

    async def main():
        async with client(app_server) as http:
            topic = await new_topic(http)
            slow = SSEClient(
                app_server.url,
                path="/answers",
                params={"topic": topic, "queue_size": 5},
                receive_buffer=4096,
                stalled=True,
            )
            async with slow, SSEClient(app_server.url, topics=[topic]) as fast:
                # 1,000 messages, ~2 MB: far more than the stalled socket holds
                burst = await http.post(f"/burst/{topic}", params={"n": 1000, "pad": 2000})
                assert burst.json() == {"published": 1000}
                await fast.read_messages(1000, timeout=60)
                assert [f.data["data"]["i"] for f in fast.messages] == list(range(1000))
                slow.resume()
                await slow.read_to_end(timeout=30)
            errors = slow.of_event("error")
            assert [orjson.loads(f.raw_data)["code"] for f in errors] == ["SLOW_CONSUMER"]
            assert len(slow.messages) < 1000

    run(main())


def test_drop_oldest_route_client_gets_gap_with_the_count(app_server):
    async def main():
        async with client(app_server) as http:
            topic = await new_topic(http)
            slow = SSEClient(
                app_server.url,
                path="/answers",
                params={"topic": topic, "queue_size": 5, "policy": "drop_oldest"},
                receive_buffer=4096,
                stalled=True,
            )
            async with slow:
                burst = await http.post(f"/burst/{topic}", params={"n": 1000, "pad": 2000})
                assert burst.json() == {"published": 1000}
                await http.post(f"/end/{topic}")
                slow.resume()
                await slow.read_to_end(timeout=30)
            dropped = sum(orjson.loads(f.raw_data).get("dropped", 0) for f in slow.of_event("gap"))
            assert dropped > 0 and dropped + len(slow.messages) == 1000
            assert slow.frames[-1].event == "end"

    run(main())


# -- per-request streams: broker.end ----------------------------------------------------


@pytest.mark.parametrize("which", ["native", "asgi"])
def test_stream_ends_on_end_and_a_reconnect_gets_end_again(which, app_server, asgi_server):
    srv = app_server if which == "native" else asgi_server

    async def main():
        async with client(srv) as http:
            topic = await new_topic(http)
            async with (
                SSEClient(srv.url, topics=[topic]) as a,
                SSEClient(srv.url, topics=[topic]) as b,
            ):
                ids = [await publish(http, topic, {"token": t}) for t in ("a", "b", "c")]
                await a.read_messages(2)
                async with SSEClient(srv.url, topics=[topic], last_n=1000) as late:
                    await late.read_messages(2)  # the answer so far, then live
                    await http.post(f"/end/{topic}")
                    for sub in (a, b, late):
                        await sub.read_to_end()
                        assert sub.ids == ids
                        assert sub.frames[-1].event == "end"
                        assert sub.last_id == ids[-1]  # end has no id: resume is before it
            async with SSEClient(srv.url, topics=[topic], resume_from=ids[-1]) as again:
                got = await again.read_to_end()
                assert [f.event for f in got if f.event != "heartbeat"][-1] == "end"
                assert again.messages == []

    run(main())


def test_ws_subscriber_gets_end_as_an_event(app_server):
    async def main():
        async with client(app_server) as http:
            topic = await new_topic(http)
            async with WSClient(app_server.ws_url) as ws:
                await ws.subscribe(topic)
                await publish(http, topic, {"token": "x"})
                end_id = (await http.post(f"/end/{topic}")).json()["message_id"]
                events = await ws.recv_events(2)
                assert events[1]["event"] == "end" and events[1]["message_id"] == end_id
                assert events[1]["data"] == {"done": True}
                assert "event" not in events[0]

    run(main())


def test_end_is_reserved_for_publishers(app_server):
    async def main():
        async with client(app_server) as http:
            topic = await new_topic(http)
            response = await http.post(
                f"/topics/{topic}/messages", json={"data": 1, "event": "end"}
            )
            assert response.status_code == 400
            assert response.json()["error"] == "INVALID_MESSAGE"

    run(main())


def test_two_nodes_over_redis(fanwire_server, redis_server):
    """The producer on node A ends; readers of node B (a route and /stream) get every
    token then the end, and a reconnect to B after the end gets the end again."""
    env = {**ENV, "FANWIRE_REDIS_URL": redis_server.url}
    a, b = (
        fanwire_server(env=env, app="ai_app:app", app_dir=str(HERE), name=f"ai_{n}") for n in "ab"
    )

    async def main():
        async with client(a) as ha, client(b) as hb:
            topic = new_name()
            await create_everywhere(ha, topic, a, b)
            route = SSEClient(b.url, path="/answers", params={"topic": topic})
            async with route, SSEClient(b.url, topics=[topic]) as native:
                ids = [await publish(ha, topic, {"token": t}) for t in "abcd"]
                await route.read_messages(4, timeout=20)
                await ha.post(f"/end/{topic}")
                for sub in (route, native):
                    await sub.read_to_end(timeout=20)
                    assert sub.ids == ids and sub.frames[-1].event == "end"
            for path, params in (("/answers", {"topic": topic}), ("/stream", {"topic": topic})):
                body = await body_to_end(
                    hb, path, params=params, headers={"Last-Event-ID": ids[-1]}
                )
                assert [f.get("event") for f in frames(body)] == ["end"]
                body = await body_to_end(hb, path, params={**params, "last_n": 100})
                assert [f.get("id") for f in frames(body)][:-1] == ids

    run(main())


def test_a_node_started_after_the_end_reads_it_from_redis(fanwire_server, redis_server):
    """A node that started after the end has none of the answer in its ring: the end comes
    in the history read from Redis, and its streams (native /stream, a route) still end."""
    env = {**ENV, "FANWIRE_REDIS_URL": redis_server.url}
    a = fanwire_server(env=env, app="ai_app:app", app_dir=str(HERE), name="ai_first")

    async def main():
        async with client(a) as ha:
            topic = new_name()
            assert (await ha.post("/topics", json={"name": topic})).status_code == 201
            ids = [await publish(ha, topic, {"token": t}) for t in "abc"]
            await ha.post(f"/end/{topic}")
            late = fanwire_server(env=env, app="ai_app:app", app_dir=str(HERE), name="ai_late")
            async with client(late) as hl:
                await wait_topic(hl, late, topic)
                for path, params in (("/stream", {"topic": topic}), ("/answers", {"topic": topic})):
                    body = await body_to_end(
                        hl, path, params=params, headers={"Last-Event-ID": ids[0]}
                    )
                    got = [(f.get("id"), f.get("event")) for f in frames(body)]
                    assert got == [(ids[1], "message"), (ids[2], "message"), (None, "end")]
                    body = await body_to_end(hl, path, params={**params, "last_n": 100})
                    assert [f.get("id") for f in frames(body)] == [*ids, None]

    run(main())


def test_without_fastapi_sse_a_clear_import_error():
    """On a FastAPI without ``fastapi.sse`` (before 0.135), importing fanwire.sse works
    and using it says what to upgrade."""
    code = (
        "import sys, asyncio, fanwire\n"
        "sys.modules['fastapi.sse'] = None  # what an old FastAPI has: no such module\n"
        "import fanwire.sse\n"
        "try:\n"
        "    asyncio.run(anext(fanwire.sse.events(fanwire.Broker(), 't')))\n"
        "except ImportError as exc:\n"
        "    print('ImportError:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ImportError: fanwire.sse needs FastAPI >= 0.135" in done.stdout


def test_rest_end_closes_streams_of_fanwire_itself(fanwire_server):
    """``POST /topics/{name}/end`` (a producer that is not in the app's process)."""
    srv = fanwire_server(env=ENV)

    async def main():
        async with client(srv) as http:
            topic = await new_topic(http)
            async with SSEClient(srv.url, topics=[topic]) as sub:
                await publish(http, topic, {"token": "a"})
                ended = await http.post(f"/topics/{topic}/end", json={"data": {"n": 1}})
                assert ended.status_code == 202
                await sub.read_to_end()
                assert orjson.loads(sub.frames[-1].raw_data)["data"] == {"n": 1}
            assert (await http.post(f"/topics/{topic}/end")).status_code == 202  # no body
            assert (await http.post("/topics/nope/end")).status_code == 404
            bad = await http.post(f"/topics/{topic}/end", content=b"{")
            assert bad.status_code == 400 and bad.json()["error"] == "INVALID_MESSAGE"

    run(main())


@pytest.mark.parametrize("which", ["native", "asgi", "route"])
def test_a_stream_of_two_topics_closes_once_both_ended(which, app_server, asgi_server):
    srv = asgi_server if which == "asgi" else app_server
    path = "/answers" if which == "route" else "/stream"

    async def main():
        async with client(srv) as http:
            first, second = await new_topic(http), await new_topic(http)
            async with SSEClient(srv.url, path=path, topics=[first, second]) as sub:
                await publish(http, first, 1)
                await http.post(f"/end/{first}")
                await sub.read_until_event("end")
                await publish(http, second, 2)  # the stream goes on for the other topic
                await sub.read_messages(2)
                assert not sub.ended
                await http.post(f"/end/{second}")
                await sub.read_to_end()
            got = [
                (f.event, f.topic)
                for f in sub.frames
                if f.raw_data and f.event in ("message", "end")
            ]
            assert got == [("message", first), ("end", first), ("message", second), ("end", second)]

    run(main())


@pytest.mark.parametrize("which", ["native", "asgi", "route"])
def test_an_ended_topic_is_vacated_while_the_stream_goes_on(which, app_server, asgi_server):
    """Occupancy (presence.py) follows the end at once, also on the native writer: the
    ended topic counts no subscriber while the stream still reads the other one."""
    srv = asgi_server if which == "asgi" else app_server
    path = "/answers" if which == "route" else "/stream"

    async def main():
        async with client(srv) as http:

            async def subscribers() -> dict[str, int]:
                rows = (await http.get("/topics")).json()["topics"]
                return {row["name"]: row["subscribers"] for row in rows}

            first, second = await new_topic(http), await new_topic(http)
            async with SSEClient(srv.url, path=path, topics=[first, second]) as sub:
                await until(lambda: _counted(subscribers, {first: 1, second: 1}), what="occupied")
                await http.post(f"/end/{first}")
                await sub.read_until_event("end")
                await until(lambda: _counted(subscribers, {first: 0, second: 1}), what="vacated")
                assert not sub.ended

    run(main())


async def _counted(subscribers, expected: dict[str, int]) -> bool:
    got = await subscribers()
    return all(got.get(name) == count for name, count in expected.items())


def test_an_ended_per_request_topic_expires_after_its_idle_ttl(fanwire_server):
    """A per-request topic (pattern with ``auto_create`` + ``idle_ttl``): created by its
    first token, ended by the producer, read to its end by two subscribers and a late one,
    then deleted once idle for ``idle_ttl`` (a reader still attached keeps it alive)."""
    topics = {"answer.*": {"auto_create": True, "idle_ttl": 1.0}}
    srv = fanwire_server(env={**ENV, "FANWIRE_TOPICS": orjson.dumps(topics).decode()})

    async def main():
        async with client(srv) as http:
            topic = f"answer.{new_name()}"
            async with SSEClient(srv.url, topics=[topic]) as first:  # creates it (auto_create)
                ids = [await publish(http, topic, {"token": t}) for t in ("a", "b", "c")]
                assert (await http.post(f"/topics/{topic}/end")).status_code == 202
                await first.read_to_end()
                assert first.ids == ids
                async with SSEClient(srv.url, topics=[topic], last_n=10) as late:
                    await late.read_to_end()
                    assert late.ids == ids  # the whole answer, then its end
                    assert late.frames[-1].event == "end"

            async def gone():
                return (await http.get(f"/topics/{topic}")).status_code == 404

            await until(gone, what="the ended topic expired", timeout=20)

    run(main(), timeout=60)

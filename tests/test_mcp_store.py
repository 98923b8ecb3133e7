"""fanwire.mcp.EventStore with the MCP SDK's own server and client (examples/mcp_server
under uvicorn), and across two Redis nodes."""

from __future__ import annotations

import os
from pathlib import Path

from mcp import Client
from mcp_types import JSONRPCNotification, JSONRPCResponse
from redis_support import until

import fanwire
import fanwire.mcp
from fanwire.backends import BackendUnavailable
from fanwire.testing.aio import run

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mcp_server"


def countdown_with_drop(url: str, n: int, drop_at: int) -> tuple[list[float], str]:
    """Call the example's tool through the SDK's client; the server drops the stream at
    ``drop_at`` and the client resumes with Last-Event-ID."""
    steps: list[float] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        steps.append(value)

    async def main() -> tuple[list[float], str]:
        async with Client(url + "/mcp", read_timeout_seconds=30, mode="legacy") as client:
            result = await client.call_tool(
                "countdown", {"n": n, "drop_at": drop_at}, progress_callback=progress
            )
            return steps, result.content[0].text

    return run(main())


def test_sdk_client_resumes_after_a_dropped_stream_every_event_once(fanwire_server):
    srv = fanwire_server(app="server:app", app_dir=str(EXAMPLE), name="mcp_server")
    steps, text = countdown_with_drop(srv.url, 30, drop_at=10)
    assert text == "counted 30"
    assert steps == [float(i) for i in range(1, 31)]
    assert '"GET /mcp HTTP/1.1" 200' in srv.log_text()  # the client did reconnect


def test_sdk_client_resumes_with_redis(fanwire_server, redis_server):
    srv = fanwire_server(
        env={"FANWIRE_REDIS_URL": redis_server.url},
        app="server:app",
        app_dir=str(EXAMPLE),
        name="mcp_redis",
    )
    steps, text = countdown_with_drop(srv.url, 30, drop_at=5)
    assert text == "counted 30"
    assert steps == [float(i) for i in range(1, 31)]
    assert '"GET /mcp HTTP/1.1" 200' in srv.log_text()


async def connected(broker: fanwire.Broker) -> bool:
    try:
        await broker.acreate_topic(f"probe{os.getpid()}")
    except BackendUnavailable:
        return False
    return True


def note(i: int) -> JSONRPCNotification:
    return JSONRPCNotification(jsonrpc="2.0", method="notifications/progress", params={"i": i})


def test_events_stored_on_one_node_replay_on_another(redis_server):
    """Two workers sharing Redis: what one stored, the other replays after any id, every
    event once and in order; an id of no stream of the store replays nothing."""

    async def main() -> None:
        a = fanwire.Broker(redis_url=redis_server.url)
        b = fanwire.Broker(redis_url=redis_server.url)
        await a.astart()
        await b.astart()
        try:
            for broker in (a, b):  # the nodes connect to Redis in the background
                await until(lambda broker=broker: connected(broker), what="Redis connected")
            store_a, store_b = fanwire.mcp.EventStore(a), fanwire.mcp.EventStore(b)
            stream = f"req-{os.getpid()}"
            priming = await store_a.store_event(stream, None)
            ids = [await store_a.store_event(stream, note(i)) for i in range(8)]
            other = await store_a.store_event(stream + "-other", note(99))
            for k, last in enumerate([priming, *ids]):
                got = []

                async def send(event, got=got):
                    got.append(event)

                assert await store_b.replay_events_after(last, send) == stream
                assert [e.message.params["i"] for e in got] == list(range(k, 8))
                assert [e.event_id for e in got] == ids[k:]
            assert other.split("/")[0] != ids[0].split("/")[0]
            nothing = []

            async def keep(event):
                nothing.append(event)

            assert await store_b.replay_events_after("not-a-stream!/1-1", keep) is None
            assert nothing == []
        finally:
            await a.aclose()
            await b.aclose()

    run(main())


def test_a_request_id_used_again_gets_a_new_stream_and_answered_ones_expire():
    """The SDK's stream ids are request ids, reused by every session: once a request's
    response is stored, the same id starts a new stream (a replay of the old one never
    shows the new one's events), and the old stream's topic is deleted ``keep`` seconds
    later."""

    async def main() -> None:
        broker = fanwire.Broker()
        await broker.astart()
        try:
            store = fanwire.mcp.EventStore(broker, keep=0.2)
            first = [await store.store_event("1", note(i)) for i in range(2)]
            answer = JSONRPCResponse(jsonrpc="2.0", id=1, result={"ok": True})
            first.append(await store.store_event("1", answer))
            again = await store.store_event("1", note(7))
            assert again.split("/")[0] != first[0].split("/")[0]
            got = []

            async def send(event):
                got.append(event)

            assert await store.replay_events_after(first[0], send) == "1"
            assert [e.event_id for e in got] == first[1:]  # not the new stream's note(7)
            old_topic = "mcp." + first[0].split("/")[0]
            await until(lambda: gone(broker, old_topic), what="the answered stream expiring")
            assert broker.has_topic("mcp." + again.split("/")[0])
            assert await store.replay_events_after(first[0], send) is None
        finally:
            await broker.aclose()

    run(main())


async def gone(broker: fanwire.Broker, topic: str) -> bool:
    return not broker.has_topic(topic)

"""fanwire over TLS: SSE over HTTPS, WSS, on every server of the matrix.

Each row of ``TLS_SERVINGS`` (fanwire.testing.matrix, docs/testing.md) serves
``fanwire.server.app:create_app`` with a self-signed certificate made for this session
(fanwire.testing.tls): uvicorn (``--ssl-keyfile/--ssl-certfile``, httptools and h11),
hypercorn and granian; the clients trust only it. Under uvicorn's TLS the native SSE
writer is off (the core cannot encrypt), and WebSocket event batches still go out as
ready-made frames through the TLS transport.
"""

import asyncio
import ssl

import httpx
import pytest
from matrix_support import create_topic as new_topic
from matrix_support import delete_topic, publish, serving_fixture

from fanwire.testing.aio import run
from fanwire.testing.matrix import TLS_SERVINGS, serving_params

serving = serving_fixture(TLS_SERVINGS)


@pytest.fixture(scope="module")
def server(fanwire_module_server, serving):
    srv = fanwire_module_server(env={"FANWIRE_DEMO_RATE": "0"}, serving=serving)
    yield srv
    srv.stop()  # now, not at the module's end: the next row starts its own


def test_the_server_speaks_only_tls(server):
    assert server.url.startswith("https://") and server.ws_url.startswith("wss://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url.replace("https://", "http://") + "/health", trust_env=False)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(server.url + "/health", verify=ssl.create_default_context(), trust_env=False)


def test_sse_over_https_delivers_live_messages(server):
    """Before the fix the native writer wrote plaintext after ``retry:`` into the TLS
    stream, and the client failed with ``SSL routines::wrong version number``."""
    topic = new_topic(server, "tls-sse")

    async def main():
        async with server.sse_client(topics=[topic]) as sse:
            await sse.read_until(lambda c: c.frames, what="retry")
            assert sse.retry == 3000
            sent = [publish(server, topic, i) for i in range(20)]
            await sse.read_messages(20)
            assert sse.ids == sent
            assert [f.data["data"] for f in sse.messages] == list(range(20))
            assert sse.error is None and not sse.ended

    run(main())


def test_sse_over_https_replays_and_ends_on_topic_deletion(server):
    topic = new_topic(server, "tls-sse-end")
    old = [publish(server, topic, i) for i in range(3)]

    async def main():
        async with server.sse_client(topics=[topic], last_n=3) as sse:
            await sse.read_messages(3)
            assert delete_topic(server, topic) == 204
            frames = await sse.read_to_end()
            assert sse.ids == old
            assert [f.data for f in frames if f.event == "topic_deleted"] == [{"topic": topic}]
            assert sse.error is None  # a clean end of the chunked body, not a TLS error

    run(main())


@pytest.mark.parametrize("row", serving_params(TLS_SERVINGS))
def test_https_stream_stalled_past_the_grace_is_aborted(fanwire_server, row):
    """The stream falls back to the ASGI path under TLS; a client stalled past
    ``close_grace`` still gets its connection aborted (as on plain HTTP), so the slot is
    freed and the server logs no unfinished response."""
    srv = fanwire_server(env={"FANWIRE_DEMO_RATE": "0", "FANWIRE_CLOSE_GRACE": "0.3"}, serving=row)
    topic = new_topic(srv, "tls-stall")
    pad = "x" * 30_000

    async def main():
        async with (
            httpx.AsyncClient(
                base_url=srv.url, verify=srv.verify, trust_env=False, timeout=30
            ) as http,
            srv.sse_client(topics=[topic]) as healthy,
            srv.sse_client(
                topics=[topic],
                receive_buffer=65536,
                stalled=True,
                policy="disconnect",
                queue_size=10,
            ),
        ):
            await healthy.read_until(lambda c: c.frames)
            published = []
            while (await http.get("/stats")).json()["topics"][topic]["subscriber_count"] > 1:
                assert len(published) < 400, "the stalled client was never cut off"
                for _ in range(20):
                    response = await http.post(
                        f"/topics/{topic}/messages", json={"data": {"pad": pad}}
                    )
                    published.append(response.json()["message_id"])
                await healthy.read_messages(len(published), timeout=30)
            for _ in range(200):  # the stalled connection is aborted after the grace
                if (await http.get("/stats")).json()["connections"]["sse"] == 1:
                    break
                await asyncio.sleep(0.05)
            assert (await http.get("/stats")).json()["connections"]["sse"] == 1
            assert healthy.ids == published and not healthy.ended
        assert "without completing response" not in srv.log_text()

    run(main(), timeout=120)


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_wss_events_replies_and_notices(server, compression):
    """Event batches go to the TLS transport as ready-made frames: they must arrive
    encrypted and whole, interleaved correctly with the library's own replies."""
    topic = new_topic(server, f"tls-ws-{compression}")
    old = [publish(server, topic, i) for i in range(5)]

    async def main():
        async with server.ws_client(compression=compression) as ws:
            await ws.subscribe(topic, last_n=5)
            live = [publish(server, topic, i) for i in range(5, 205)]
            await ws.recv_events(205)
            assert ws.event_ids() == old + live
            assert [e["data"] for e in ws.events] == list(range(205))
            pong = await ws.ping(request_id="p")
            assert pong["type"] == "pong"
            own = await ws.publish(topic, {"from": "ws"})
            await ws.wait_for(lambda c: own["message_id"] in c.event_ids(), what="own event")
            assert delete_topic(server, topic) == 204
            info = await ws.recv_until(lambda m: m.get("message") == "topic_deleted")
            assert info["topic"] == topic
            assert not ws.closed

    run(main())

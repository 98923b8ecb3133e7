"""Graceful shutdown of ``python -m fanwire`` on SIGTERM / SIGINT.

Every SSE stream gets ``event: shutdown`` and ends, every WebSocket gets ``info``
``shutdown`` then close 1001, ``/health`` answers 503 while draining, a stalled client
does not hold the exit beyond the grace period, and the process exits 0 with no traceback.
"""

import asyncio
import os
import signal
import time

import httpx
import pytest

from fanwire.testing.aio import run
from fanwire.testing.clients import SSEClient, WSClient
from fanwire.testing.processes import ServerStartError

GRACE = "3"


def start(fanwire_server):
    env = {"FANWIRE_DEMO_RATE": "0", "FANWIRE_SHUTDOWN_GRACE": GRACE, "FANWIRE_CLOSE_GRACE": GRACE}
    srv = fanwire_server(env=env)
    assert httpx.post(srv.url + "/topics", json={"name": "t"}, trust_env=False).status_code == 201
    return srv


def wait_exit(srv, limit=30.0):
    """Wait (at most ``limit`` s) for the server to exit; its exit code."""
    deadline = time.monotonic() + limit
    while srv.running:
        assert time.monotonic() < deadline, f"still running {limit}s after the signal"
        time.sleep(0.05)
    return srv.stop()


def signal_and_wait(srv, sig):
    os.kill(srv.pid, sig)
    return wait_exit(srv)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clients_are_told_and_the_process_exits_cleanly(fanwire_server, sig):
    srv = start(fanwire_server)

    async def main():
        async with SSEClient(srv.url, topics=["t"]) as sse, WSClient(srv.ws_url) as ws:
            await ws.subscribe("t")
            await ws.publish("t", "before")
            await sse.read_messages(1)
            code = await asyncio.to_thread(signal_and_wait, srv, sig)
            frames = await sse.read_to_end()
            assert frames[-1].event == "shutdown"
            assert isinstance(frames[-1].data["ts"], float)
            assert await ws.wait_closed() == 1001
            assert ws.messages[-1]["type"] == "info"
            assert ws.messages[-1]["message"] == "shutdown"
            return code

    assert run(main()) == 0
    log = srv.log_text()
    assert "Traceback" not in log
    assert "Finished server process" in log


def test_stalled_clients_do_not_hold_the_exit_and_health_says_draining(fanwire_server):
    srv = start(fanwire_server)

    async def main():
        async with (
            httpx.AsyncClient(base_url=srv.url, trust_env=False) as http,
            SSEClient(srv.url, topics=["t"], receive_buffer=65536, stalled=True),
            WSClient(srv.ws_url, receive_buffer=65536, max_queue=1) as ws,
            SSEClient(srv.url, topics=["t"]) as healthy,
        ):
            await ws.subscribe("t", queue_size=1000)
            ws.stall()
            for n in range(150):  # 4.5 MB: both stalled sockets are full
                await http.post("/topics/t/messages", json={"data": {"n": n, "pad": "x" * 30_000}})
            await healthy.read_messages(150, timeout=30)
            os.kill(srv.pid, signal.SIGTERM)
            health = await http.get("/health")  # a kept-alive connection, still served
            assert health.status_code == 503
            assert health.json()["status"] == "shutting_down"
            await healthy.read_to_end()
            assert healthy.frames[-1].event == "shutdown"
            return await asyncio.to_thread(wait_exit, srv)

    assert run(main(), timeout=90) == 0
    assert "Traceback" not in srv.log_text()


def test_websockets_without_a_subscription_are_told_and_closed_1001(fanwire_server):
    """A socket that never subscribed, or unsubscribed from everything, has nothing the
    core could close: it still gets ``info shutdown`` and 1001, before the grace ends."""
    srv = fanwire_server(env={"FANWIRE_DEMO_RATE": "0", "FANWIRE_SHUTDOWN_GRACE": "30"})
    assert httpx.post(srv.url + "/topics", json={"name": "t"}, trust_env=False).status_code == 201

    async def main():
        async with WSClient(srv.ws_url) as bare, WSClient(srv.ws_url) as left:
            await left.subscribe("t")
            await left.unsubscribe("t")
            os.kill(srv.pid, signal.SIGTERM)
            for ws in (bare, left):
                assert await ws.wait_closed(timeout=15) == 1001
                assert ws.messages[-1]["type"] == "info"
                assert ws.messages[-1]["message"] == "shutdown"
            return await asyncio.to_thread(wait_exit, srv, 15)

    assert run(main()) == 0
    assert "Traceback" not in srv.log_text()


def test_stalled_websockets_do_not_stretch_the_shutdown_grace(fanwire_server):
    """Clients that stopped reading cannot take their shutdown notice: they are dropped
    when the shutdown grace ends (even with a longer ``close_grace``), so the process
    exits within the grace plus uvicorn's own closing (the 2.5 s margin bounds a hang,
    it is no benchmark), with no cancelled task in the log."""
    grace = 3.0
    srv = fanwire_server(
        env={
            "FANWIRE_DEMO_RATE": "0",
            "FANWIRE_SHUTDOWN_GRACE": str(grace),
            "FANWIRE_CLOSE_GRACE": "30",
        }
    )
    assert httpx.post(srv.url + "/topics", json={"name": "t"}, trust_env=False).status_code == 201

    async def main():
        async with httpx.AsyncClient(base_url=srv.url, trust_env=False) as http:
            stalled = [WSClient(srv.ws_url, receive_buffer=65536, max_queue=1) for _ in range(5)]
            for ws in stalled:
                await ws.connect()
                await ws.subscribe("t")
                ws.stall()
            async with WSClient(srv.ws_url) as healthy:
                await healthy.subscribe("t")
                for n in range(150):  # 4.5 MB: every stalled socket is full
                    await http.post(
                        "/topics/t/messages", json={"data": {"n": n, "pad": "x" * 30_000}}
                    )
                await healthy.recv_events(150, timeout=30)
                os.kill(srv.pid, signal.SIGTERM)
                assert await healthy.wait_closed(timeout=15) == 1001
                code = await asyncio.to_thread(wait_exit, srv, grace + 2.5)
            for ws in stalled:
                await ws.close()
            return code

    assert run(main(), timeout=90) == 0
    log = srv.log_text()
    assert "Traceback" not in log
    assert "CancelledError" not in log


@pytest.mark.parametrize("native_sse", ["1", "0"])
def test_stalled_sse_streams_do_not_stretch_the_shutdown_grace(fanwire_server, native_sse):
    """The same for SSE, on the native writer and on the ASGI path."""
    grace = 3.0
    env = {
        "FANWIRE_DEMO_RATE": "0",
        "FANWIRE_SHUTDOWN_GRACE": str(grace),
        "FANWIRE_CLOSE_GRACE": "30",
        "FANWIRE_NATIVE_SSE": native_sse,
    }
    srv = fanwire_server(env=env)
    assert httpx.post(srv.url + "/topics", json={"name": "t"}, trust_env=False).status_code == 201

    async def main():
        stalled = [
            SSEClient(
                srv.url,
                topics=["t"],
                receive_buffer=65536,
                stalled=True,
                policy="drop_oldest",
                queue_size=100,
            )
            for _ in range(3)
        ]
        async with httpx.AsyncClient(base_url=srv.url, trust_env=False) as http:
            for client in stalled:
                await client.connect()
            async with SSEClient(srv.url, topics=["t"]) as healthy:
                for n in range(150):  # 4.5 MB: every stalled socket is full
                    data = {"n": n, "pad": "x" * 30_000}
                    await http.post("/topics/t/messages", json={"data": data})
                await healthy.read_messages(150, timeout=30)
                os.kill(srv.pid, signal.SIGTERM)
                await healthy.read_to_end()
                assert healthy.frames[-1].event == "shutdown"
                code = await asyncio.to_thread(wait_exit, srv, grace + 2.5)
        for client in stalled:
            await client.close()
        return code

    assert run(main(), timeout=90) == 0
    log = srv.log_text()
    assert "Traceback" not in log
    assert "CancelledError" not in log


def test_several_workers_without_redis_are_refused(fanwire_server):
    with pytest.raises(ServerStartError, match="exited with code 2 before it was ready") as no:
        fanwire_server(env={"FANWIRE_REDIS_URL": None}, args=["--workers", "2"])
    assert "FANWIRE_REDIS_URL" in str(no.value)  # the error carries the server's log
    assert "Traceback" not in str(no.value)

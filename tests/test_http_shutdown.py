"""Graceful shutdown of ``python -m fanwire`` on SIGTERM / SIGINT.

Every SSE stream gets ``event: shutdown`` and ends, every WebSocket gets ``info``
``shutdown`` then close 1001, ``/health`` answers 503 while draining, a stalled client
does not hold the exit beyond the grace period, and the process exits 0 with no traceback.

Each test runs ``python -m fanwire`` and the rows of the server matrix
(fanwire.testing.matrix, docs/testing.md): the whole matrix for the notices, the
representative subset (``REPRESENTATIVE``) for the slow stalled-client tests.
"""

import asyncio
import os
import signal
import time

import httpx
import pytest
from matrix_support import create_topic

from fanwire.testing.aio import run
from fanwire.testing.matrix import REPRESENTATIVE, SERVINGS, Serving, serving_params
from fanwire.testing.processes import ServerStartError

GRACE = "3"
#: hypercorn and granian end the connections on SIGTERM themselves, before fanwire is
#: told (a documented exception: docs/testing.md), so the notice tests run ``python -m
#: fanwire`` (None) and the uvicorn rows; test_other_servers_end_every_connection_on_sigterm
#: asserts what the others do instead.
OWN_SHUTDOWN = ("hypercorn", "granian")
UVICORN = [row for row in SERVINGS if row.server not in OWN_SHUTDOWN]
EVERY_WAY = [pytest.param(None, id="python-m-fanwire"), *serving_params(UVICORN)]
SUBSET = [
    pytest.param(None, id="python-m-fanwire"),
    *serving_params(row for row in REPRESENTATIVE if row.server not in OWN_SHUTDOWN),
]


def start(fanwire_server, row: Serving | None = None, **env):
    env = {"FANWIRE_DEMO_RATE": "0", "FANWIRE_SHUTDOWN_GRACE": GRACE, **env}
    srv = fanwire_server(env=env, serving=row)
    create_topic(srv, "t")
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


def clean_exit(row: Serving | None, sig: int = signal.SIGTERM) -> int:
    """The exit status of a clean shutdown: 0 for ``python -m fanwire``; uvicorn's own
    command re-raises the signal it handled once it is done, so it ends by that signal."""
    return -sig if row is not None and row.server == "uvicorn" else 0


@pytest.mark.parametrize(
    ("row", "sig"),
    [
        pytest.param(None, signal.SIGINT, id="python-m-fanwire-SIGINT"),
        *[pytest.param(*p.values, signal.SIGTERM, id=p.id, marks=p.marks) for p in EVERY_WAY],
    ],
)
def test_clients_are_told_and_the_process_exits_cleanly(fanwire_server, row, sig):
    srv = start(fanwire_server, row, FANWIRE_CLOSE_GRACE=GRACE)

    async def main():
        async with srv.sse_client(topics=["t"]) as sse, srv.ws_client() as ws:
            await ws.subscribe("t")
            await ws.publish("t", "before")
            await sse.read_messages(1)
            os.kill(srv.pid, sig)
            frames = await sse.read_to_end()
            assert frames[-1].event == "shutdown"
            assert isinstance(frames[-1].data["ts"], float)
            assert await ws.wait_closed() == 1001
            assert ws.messages[-1]["type"] == "info"
            assert ws.messages[-1]["message"] == "shutdown"
        # The clients hang up as they would: under TLS a kept-alive connection that its
        # client no longer reads holds `python -m uvicorn`'s exit for asyncio's
        # ssl_shutdown_timeout (30 s; docs/testing.md), `python -m fanwire` for its grace.
        return await asyncio.to_thread(wait_exit, srv)

    assert run(main()) == clean_exit(row, sig)
    log = srv.log_text()
    assert "Traceback" not in log
    assert "Finished server process" in log


OTHERS_SHUTDOWN = (
    "{server} handles SIGTERM itself and ends every connection before fanwire's lifespan "
    "can tell them (no event: shutdown, no info shutdown/1001 guaranteed); every SSE stream "
    "and WebSocket still ends and the process exits (asserted by "
    "test_other_servers_end_every_connection_on_sigterm)"
)


@pytest.mark.parametrize(
    "row",
    [
        pytest.param(
            row,
            id=row.name,
            marks=[pytest.mark.fanwire_exception(OTHERS_SHUTDOWN.format(server=row.server))],
        )
        for row in SERVINGS
        if row.server in OWN_SHUTDOWN
    ],
)
def test_other_servers_end_every_connection_on_sigterm(fanwire_server, row):
    """The documented exception of hypercorn and granian: no notice, but no connection
    is left open and the process exits."""
    srv = start(fanwire_server, row, FANWIRE_CLOSE_GRACE=GRACE)

    async def main():
        async with (
            srv.sse_client(topics=["t"]) as sse,
            srv.ws_client() as ws,
            srv.ws_client() as bare,
        ):
            await ws.subscribe("t")
            await ws.publish("t", "before")
            await sse.read_messages(1)
            code = await asyncio.to_thread(signal_and_wait, srv, signal.SIGTERM)
            await sse.read_to_end()
            assert sse.ended
            for client in (ws, bare):
                assert await client.wait_closed(timeout=15) is not None
            return code

    assert run(main()) == 0


@pytest.mark.parametrize("row", SUBSET)
def test_stalled_clients_do_not_hold_the_exit_and_health_says_draining(fanwire_server, row):
    srv = start(fanwire_server, row, FANWIRE_CLOSE_GRACE=GRACE)

    async def main():
        async with (
            httpx.AsyncClient(base_url=srv.url, verify=srv.verify, trust_env=False) as http,
            srv.sse_client(topics=["t"], receive_buffer=65536, stalled=True),
            srv.ws_client(receive_buffer=65536, max_queue=1) as ws,
            srv.sse_client(topics=["t"]) as healthy,
        ):
            await ws.subscribe("t", queue_size=1000)
            ws.stall()
            for n in range(150):  # 4.5 MB: both stalled sockets are full
                await http.post("/topics/t/messages", json={"data": {"n": n, "pad": "x" * 30_000}})
            await healthy.read_messages(150, timeout=30)
            os.kill(srv.pid, signal.SIGTERM)
            try:
                health = await http.get("/health")  # a kept-alive connection, still served
            except httpx.RemoteProtocolError:
                # `python -m uvicorn` closes idle connections as soon as it is signalled
                # (fanwire's own server drains first): nobody can ask any more.
                assert row is not None
            else:
                assert health.status_code == 503
                assert health.json()["status"] == "shutting_down"
            await healthy.read_to_end()
            assert healthy.frames[-1].event == "shutdown"
            return await asyncio.to_thread(wait_exit, srv)

    assert run(main(), timeout=90) == clean_exit(row)
    assert "Traceback" not in srv.log_text()


@pytest.mark.parametrize("row", EVERY_WAY)
def test_websockets_without_a_subscription_are_told_and_closed_1001(fanwire_server, row):
    """A socket that never subscribed, or unsubscribed from everything, has nothing the
    core could close: it still gets ``info shutdown`` and 1001, before the grace ends."""
    srv = start(fanwire_server, row, FANWIRE_SHUTDOWN_GRACE="30")

    async def main():
        async with srv.ws_client() as bare, srv.ws_client() as left:
            await left.subscribe("t")
            await left.unsubscribe("t")
            os.kill(srv.pid, signal.SIGTERM)
            for ws in (bare, left):
                assert await ws.wait_closed(timeout=15) == 1001
                assert ws.messages[-1]["type"] == "info"
                assert ws.messages[-1]["message"] == "shutdown"
            return await asyncio.to_thread(wait_exit, srv, 15)

    assert run(main()) == clean_exit(row)
    assert "Traceback" not in srv.log_text()


@pytest.mark.parametrize("row", serving_params(UVICORN))
def test_a_websocket_behind_on_its_reading_is_told_before_it_closes(fanwire_server, row):
    """``python -m uvicorn`` closes open WebSockets with 1012 as soon as it is signalled;
    fanwire's lifespan hook holds its handler back until the clients were told (the
    shutdown grace at most). A client a few megabytes behind, reading again a second
    after the signal, gets its backlog, ``info shutdown`` and 1001, not 1012."""
    srv = start(fanwire_server, row, FANWIRE_CLOSE_GRACE=GRACE)

    async def main():
        async with (
            httpx.AsyncClient(base_url=srv.url, verify=srv.verify, trust_env=False) as http,
            srv.ws_client(receive_buffer=65536, max_queue=1) as ws,
        ):
            await ws.subscribe("t", queue_size=1000)
            ws.stall()
            for n in range(100):  # 3 MB: its socket is full
                await http.post("/topics/t/messages", json={"data": {"n": n, "pad": "x" * 30_000}})
            os.kill(srv.pid, signal.SIGTERM)
            await asyncio.sleep(1.0)
            ws.resume()
            assert await ws.wait_closed(timeout=15) == 1001
            assert ws.messages[-1]["message"] == "shutdown"
            assert len(ws.event_ids("t")) == 100
        return await asyncio.to_thread(wait_exit, srv, 15)

    assert run(main(), timeout=90) == clean_exit(row)
    assert "Traceback" not in srv.log_text()


@pytest.mark.parametrize("row", SUBSET)
def test_stalled_websockets_do_not_stretch_the_shutdown_grace(fanwire_server, row):
    """Clients that stopped reading cannot take their shutdown notice: they are dropped
    when the shutdown grace ends (even with a longer ``close_grace``), so the process
    exits within the grace plus uvicorn's own closing (the 2.5 s margin bounds a hang,
    it is no benchmark), with no cancelled task in the log."""
    grace = 3.0
    srv = start(fanwire_server, row, FANWIRE_CLOSE_GRACE="30")

    async def main():
        async with httpx.AsyncClient(base_url=srv.url, verify=srv.verify, trust_env=False) as http:
            stalled = [srv.ws_client(receive_buffer=65536, max_queue=1) for _ in range(5)]
            for ws in stalled:
                await ws.connect()
                await ws.subscribe("t")
                ws.stall()
            async with srv.ws_client() as healthy:
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

    assert run(main(), timeout=90) == clean_exit(row)
    log = srv.log_text()
    assert "Traceback" not in log
    assert "CancelledError" not in log


@pytest.mark.parametrize("row", SUBSET)
def test_stalled_sse_streams_do_not_stretch_the_shutdown_grace(fanwire_server, row):
    """The same for SSE, on the native writer and on the ASGI path."""
    grace = 3.0
    srv = start(fanwire_server, row, FANWIRE_CLOSE_GRACE="30")

    async def main():
        stalled = [
            srv.sse_client(
                topics=["t"],
                receive_buffer=65536,
                stalled=True,
                policy="drop_oldest",
                queue_size=100,
            )
            for _ in range(3)
        ]
        async with httpx.AsyncClient(base_url=srv.url, verify=srv.verify, trust_env=False) as http:
            for client in stalled:
                await client.connect()
            async with srv.sse_client(topics=["t"]) as healthy:
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

    assert run(main(), timeout=90) == clean_exit(row)
    log = srv.log_text()
    assert "Traceback" not in log
    assert "CancelledError" not in log


def test_several_workers_without_redis_are_refused(fanwire_server):
    with pytest.raises(ServerStartError, match="exited with code 2 before it was ready") as no:
        fanwire_server(env={"FANWIRE_REDIS_URL": None}, args=["--workers", "2"])
    assert "FANWIRE_REDIS_URL" in str(no.value)  # the error carries the server's log
    assert "Traceback" not in str(no.value)

"""WebSocket lifecycle against a real server (PROTOCOL.md, "WebSocket": closing).

A stalled client under ``disconnect`` loses its socket after ``close_grace``.
"""

import asyncio
import itertools
import os
import time

import httpx
import pytest

from fanwire.testing.aio import run
from fanwire.testing.clients import WSClient

_names = itertools.count(1)
PAYLOAD = "x" * 30_000


@pytest.fixture(scope="module")
def server(fanwire_module_server):
    return fanwire_module_server(env={"FANWIRE_DEMO_RATE": "0"})


def new_topic(srv, prefix="life"):
    name = f"{prefix}{os.getpid()}-{next(_names)}"
    assert httpx.post(srv.url + "/topics", json={"name": name}, trust_env=False).status_code == 201
    return name


def server_peers(pid, port):
    """Remote ports of the TCP sockets the server process ``pid`` holds on ``port``.

    Read from /proc: the socket inodes among the process's open files, matched with the
    kernel's TCP table. A socket the server aborted is no longer among them.
    """
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    peers = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                if int(local.rsplit(":", 1)[1], 16) == port and inode in inodes:
                    peers.add(int(remote.rsplit(":", 1)[1], 16))
    return peers


def local_port(ws):
    return ws._ws.transport.get_extra_info("sockname")[1]


async def until(check, *, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.05)
    return value


# -- 1. a stalled client under disconnect loses its socket --------------------------------


def test_stalled_client_under_disconnect_loses_its_socket_after_close_grace(fanwire_server):
    """The core cuts a client that stopped reading; after ``close_grace`` the server
    aborts the socket instead of waiting forever for room for the close frame."""
    srv = fanwire_server(env={"FANWIRE_DEMO_RATE": "0", "FANWIRE_CLOSE_GRACE": "0.5"})
    topic = new_topic(srv)

    async def main():
        async with (
            httpx.AsyncClient(base_url=srv.url, trust_env=False, timeout=30) as http,
            WSClient(srv.ws_url, receive_buffer=65536, max_queue=1) as slow,
        ):
            await slow.subscribe(topic, policy="disconnect", queue_size=10)
            port = local_port(slow)
            assert port in server_peers(srv.pid, srv.port)
            slow.stall()

            async def cut():
                for n in range(20):
                    await http.post(
                        f"/topics/{topic}/messages", json={"data": {"n": n, "pad": PAYLOAD}}
                    )
                stats = (await http.get("/stats")).json()["topics"][topic]
                return stats["subscriber_count"] == 0

            await until(cut, timeout=60, what="the stalled client to be cut off")

            async def socket_gone():
                return port not in server_peers(srv.pid, srv.port)

            await until(socket_gone, timeout=20, what="the server to drop the stalled socket")
            health = (await http.get("/health")).json()
            assert health["status"] == "healthy"
        assert "Traceback" not in srv.log_text()

    run(main(), timeout=120)

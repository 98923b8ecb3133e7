"""The native SSE path hands each connection to the core after the response head.

Under uvicorn (plain HTTP/1.1) the server process then holds exactly one descriptor per
SSE client (the core's; uvicorn let go of its own), uvicorn no longer counts the
connection (``--limit-concurrency``), and the core alone sees the client leave: the
counts drop with no traffic on the topic.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import httpx

N = 20


def open_stream(port: int, topic: str) -> socket.socket:
    """A raw SSE client, returned once the response head and ``retry:`` arrived."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    request = f"GET /stream?topic={topic} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n"
    sock.sendall(request.encode())
    data = b""
    while b"retry:" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    return sock


def open_stream_admitted(port: int, topic: str) -> socket.socket:
    """:func:`open_stream`, again while uvicorn answers 503 (at its limit): a stream is
    handed off a loop turn or two after its head, and then uvicorn no longer counts it."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return open_stream(port, topic)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def read_until(sock: socket.socket, needle: bytes) -> bytes:
    data = b""
    while needle not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for(check: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def subscribers(http: httpx.Client, topic: str) -> int:
    return int(http.get("/stats").json()["topics"][topic]["subscriber_count"])


def test_one_descriptor_per_stream_and_leaving_clients_seen(fanwire_server) -> None:
    server = fanwire_server(env={"FANWIRE_DEMO_RATE": "0"})
    pid = server.pid
    assert pid is not None
    with httpx.Client(base_url=server.url, trust_env=False, timeout=20) as http:
        assert http.post("/topics", json={"name": "fd"}).status_code == 201
        assert http.post("/topics", json={"name": "warm"}).status_code == 201
        warm = open_stream(server.port, "warm")  # the writer thread's own fds come first
        assert wait_for(lambda: subscribers(http, "warm") == 1)
        time.sleep(0.5)
        before = descriptors(pid)  # this client's connection and the first stream included
        streams = [open_stream(server.port, "fd") for _ in range(N)]
        assert wait_for(lambda: subscribers(http, "fd") == N)
        # One per stream once uvicorn let go (two when the core wrote to a duplicate).
        assert wait_for(lambda: descriptors(pid) == before + N), descriptors(pid) - before
        time.sleep(0.5)
        assert descriptors(pid) == before + N
        message_id = http.post("/topics/fd/messages", json={"data": 1}).json()["message_id"]
        for sock in streams:
            assert f"id: {message_id}".encode() in read_until(sock, b'"data":1')
        # Half the clients leave; nothing is published: the core sees them go.
        for sock in streams[: N // 2]:
            sock.close()
        assert wait_for(lambda: subscribers(http, "fd") == N - N // 2)
        assert wait_for(lambda: descriptors(pid) == before + N - N // 2)
        stats = http.get("/stats").json()
        assert stats["subscriber_count"] == N - N // 2 + 1
        # Deleting the topic ends the rest cleanly: notice, last chunk, then the close.
        assert http.delete("/topics/fd").status_code in (200, 204)
        for sock in streams[N // 2 :]:
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            assert b"event: topic_deleted" in data
            assert data.endswith(b"0\r\n\r\n")
            sock.close()
        assert wait_for(lambda: descriptors(pid) == before)
        warm.close()
    log = server.log_text()
    assert "ERROR" not in log and "Traceback" not in log, log[-3000:]


def test_uvicorn_limit_concurrency_does_not_count_streams(fanwire_server) -> None:
    """uvicorn forgot the handed-off connections: more streams than its
    ``--limit-concurrency`` stay open and a request beside them is still served."""
    server = fanwire_server(
        app="fanwire.server.app:create_app",
        factory=True,
        env={"FANWIRE_DEMO_RATE": "0", "FANWIRE_AUTO_CREATE_TOPICS": "1"},
        args=["--limit-concurrency", "4"],
    )
    streams = [open_stream_admitted(server.port, "lc") for _ in range(8)]
    with httpx.Client(base_url=server.url, trust_env=False, timeout=20) as http:
        assert wait_for(lambda: http.get("/health").status_code == 200)
        assert subscribers(http, "lc") == 8
        message_id = http.post("/topics/lc/messages", json={"data": 2}).json()["message_id"]
        for sock in streams:
            assert f"id: {message_id}".encode() in read_until(sock, b'"data":2')
            sock.close()
        assert wait_for(lambda: subscribers(http, "lc") == 0)
    log = server.log_text()
    assert "ERROR" not in log and "Traceback" not in log, log[-3000:]


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_writer_threads_setting_spreads_streams_and_keeps_each_in_order(fanwire_server) -> None:
    """``FANWIRE_WRITER_THREADS=3``: the first native stream starts three writer threads,
    and streams on different lanes each get every message in id order."""
    server = fanwire_server(env={"FANWIRE_DEMO_RATE": "0", "FANWIRE_WRITER_THREADS": "3"})
    pid = server.pid
    assert pid is not None
    with httpx.Client(base_url=server.url, trust_env=False, timeout=20) as http:
        assert http.post("/topics", json={"name": "lanes"}).status_code == 201
        before = threads(pid)
        socks = [open_stream(server.port, "lanes") for _ in range(6)]
        try:
            assert wait_for(lambda: subscribers(http, "lanes") == 6)
            assert threads(pid) - before == 3
            ids = [
                http.post("/topics/lanes/messages", json={"data": i}).json()["message_id"]
                for i in range(50)
            ]
            for sock in socks:
                data = read_until(sock, f"id: {ids[-1]}\n".encode()).decode()
                at = [data.index(f"id: {i}\n") for i in ids]
                assert at == sorted(at)
        finally:
            for sock in socks:
                sock.close()

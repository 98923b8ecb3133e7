"""WebSockets handed to the core after their handshake (``FANWIRE_WS_HANDOFF``).

Under uvicorn (websockets-sansio, plain HTTP) the server process then holds exactly one
descriptor per WebSocket client (the core's; uvicorn let go of its own), and the core
alone reads, parses and answers the client's frames at the protocol level: pings, bad
frames (with RFC 6455's close codes), the close handshake, frames pipelined right after
the handshake. Raw sockets, so every byte on the wire is seen.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
from collections.abc import Callable

import httpx
import orjson

N = 20
HANDOFF = {"FANWIRE_DEMO_RATE": "0", "FANWIRE_WS_HANDOFF": "1"}


def frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = True) -> bytes:
    """A client frame (masked unless told not to)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def text(obj: object) -> bytes:
    return frame(0x1, orjson.dumps(obj))


class Raw:
    """A raw WebSocket client: ``frames()`` yields (opcode, payload) as they come."""

    def __init__(self, port: int, path: str = "/ws") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, self.buf
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def next(self) -> tuple[int, bytes] | None:
        """The next server frame, or None at end of file."""
        while True:
            if len(self.buf) >= 2:
                n, at = self.buf[1] & 0x7F, 2
                if n == 126 and len(self.buf) >= 4:
                    n, at = struct.unpack("!H", self.buf[2:4])[0], 4
                elif n == 127 and len(self.buf) >= 10:
                    n, at = struct.unpack("!Q", self.buf[2:10])[0], 10
                if n < 126 or at > 2:
                    if len(self.buf) >= at + n:
                        opcode, payload = self.buf[0] & 0x0F, self.buf[at : at + n]
                        self.buf = self.buf[at + n :]
                        return opcode, payload
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def json(self) -> dict[str, object]:
        """The next text frame's message (skipping pings)."""
        while True:
            got = self.next()
            assert got is not None
            if got[0] == 0x1:
                message = orjson.loads(got[1])
                assert isinstance(message, dict)
                return message

    def close_code(self) -> int:
        """Read until the server's close frame; its code."""
        while True:
            got = self.next()
            assert got is not None, "end of file before a close frame"
            if got[0] == 0x8:
                return int(struct.unpack("!H", got[1][:2])[0])

    def close(self) -> None:
        self.sock.close()


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


def subscribe(ws: Raw, topic: str) -> None:
    ws.sock.sendall(text({"type": "subscribe", "topic": topic, "request_id": "s"}))
    ack = ws.json()
    assert ack["type"] == "ack" and ack["request_id"] == "s", ack


def test_one_descriptor_per_websocket_and_leaving_clients_seen(fanwire_server) -> None:
    server = fanwire_server(env=HANDOFF)
    pid = server.pid
    assert pid is not None
    with httpx.Client(base_url=server.url, trust_env=False, timeout=20) as http:
        assert http.post("/topics", json={"name": "fd"}).status_code == 201
        warm = Raw(server.port)  # the writer thread's own fds come first
        assert warm.json()["message"] == "connected"
        time.sleep(0.5)
        before = descriptors(pid)
        clients = [Raw(server.port) for _ in range(N)]
        for ws in clients:
            assert ws.json()["message"] == "connected"
            subscribe(ws, "fd")
        assert subscribers(http, "fd") == N
        # One per connection once uvicorn let go (two if the core wrote to a duplicate).
        assert wait_for(lambda: descriptors(pid) == before + N), descriptors(pid) - before
        message_id = http.post("/topics/fd/messages", json={"data": 1}).json()["message_id"]
        for ws in clients:
            event = ws.json()
            assert event["type"] == "event" and event["message_id"] == message_id
        # Half the clients leave without a close frame; nothing is published: seen.
        for ws in clients[: N // 2]:
            ws.close()
        assert wait_for(lambda: subscribers(http, "fd") == N - N // 2)
        assert wait_for(lambda: descriptors(pid) == before + N - N // 2)
        # The others close cleanly: their close is echoed, then the server closes.
        for ws in clients[N // 2 :]:
            ws.sock.sendall(frame(0x8, struct.pack("!H", 1000)))
            assert ws.close_code() == 1000
            assert ws.next() is None
            ws.close()
        assert wait_for(lambda: descriptors(pid) == before)
        warm.close()
    log = server.log_text()
    assert "ERROR" not in log and "Traceback" not in log, log[-3000:]


def test_frames_sent_right_after_the_handshake_are_answered(fanwire_server) -> None:
    """A client that sends its first messages the moment the 101 arrives, before the
    greeting: none is lost, whichever side read them (uvicorn before the handoff, or
    the core). (Bytes sent in the same packet as the upgrade request are dropped by
    uvicorn's HTTP parser before any WebSocket code sees them, on every path.)"""
    server = fanwire_server(env=HANDOFF)
    pings = b"".join(text({"type": "ping", "request_id": str(i)}) for i in range(5))
    for _ in range(5):
        ws = Raw(server.port)
        ws.sock.sendall(pings)
        assert ws.json()["message"] == "connected"
        assert [ws.json()["request_id"] for _ in range(5)] == [str(i) for i in range(5)]
        ws.close()


def test_protocol_ping_and_bad_frames_get_their_close_codes(fanwire_server) -> None:
    server = fanwire_server(
        app="fanwire.server.app:create_app",
        factory=True,
        env=HANDOFF,
        args=["--ws-max-size", "4096", "--limit-concurrency", "4"],
    )
    # uvicorn forgot the handed-off connections: more than its --limit-concurrency stay
    # open (it would answer the fifth handshake 503 otherwise).
    many = [Raw(server.port) for _ in range(8)]
    for other in many:
        assert other.json()["message"] == "connected"
    ws = Raw(server.port)
    assert ws.json()["message"] == "connected"
    ws.sock.sendall(frame(0x9, b"hello"))
    assert ws.next() == (0xA, b"hello")  # a pong with the ping's payload
    # A message in fragments, a ping between them: one message, answered.
    ping = orjson.dumps({"type": "ping", "request_id": "frag"})
    ws.sock.sendall(frame(0x1, ping[:5], fin=False) + frame(0x9, b"") + frame(0x0, ping[5:]))
    assert ws.next() == (0xA, b"")
    assert ws.json()["request_id"] == "frag"
    ws.close()
    cases = [
        (frame(0x1, b'{"type":"ping"}', masked=False), 1002),  # unmasked
        (frame(0x1, b'"\xc3\x28"'), 1007),  # not UTF-8
        (frame(0x1, b" " * 5000), 1009),  # over --ws-max-size
        (frame(0x3, b""), 1002),  # reserved opcode
    ]
    for data, code in cases:
        ws = Raw(server.port)
        assert ws.json()["message"] == "connected"
        ws.sock.sendall(data)
        assert ws.close_code() == code
        ws.close()
    for other in many:
        other.close()
    log = server.log_text()
    assert "Traceback" not in log, log[-3000:]


def test_slow_consumer_closed_1008_and_shutdown_1001(fanwire_server) -> None:
    server = fanwire_server(env={**HANDOFF, "FANWIRE_SHUTDOWN_GRACE": "3"})
    with httpx.Client(base_url=server.url, trust_env=False, timeout=20) as http:
        assert http.post("/topics", json={"name": "slow"}).status_code == 201
        slow = Raw(server.port)
        assert slow.json()["message"] == "connected"
        slow.sock.sendall(
            text({"type": "subscribe", "topic": "slow", "policy": "disconnect", "queue_size": 2})
        )
        assert slow.json()["type"] == "ack"
        idle = Raw(server.port)  # never subscribes: told of the shutdown all the same
        assert idle.json()["message"] == "connected"
        body = {"messages": [{"data": "x" * 30000} for _ in range(100)]}
        for _ in range(4):  # never read meanwhile: its socket and queue fill
            http.post("/topics/slow/messages", json=body)
        got = []
        while (message := slow.next()) is not None and message[0] != 0x8:
            got.append(message)
        assert message is not None and struct.unpack("!H", message[1][:2])[0] == 1008
        assert b"SLOW_CONSUMER" in got[-1][1]
        slow.close()
    server.stop()  # SIGTERM: the idle client gets `info shutdown`, then 1001
    assert idle.json()["message"] == "shutdown"
    assert idle.close_code() == 1001
    idle.close()


def test_publish_acks_do_not_wait_for_the_wake_interval(fanwire_server) -> None:
    """``FANWIRE_WAKE_INTERVAL`` spaces the subscribers' wake-up rounds; it must not hold
    a client's messages. The core used to tell the loop of them through the subscribers'
    notifier, so every publish over a handed-off WebSocket waited for the next round (up
    to 5 ms by default: one WebSocket with 256 publishes in flight was held at 21,500
    acks/s, 50,000 since). Here the interval is a minute: each ack must come long before."""
    server = fanwire_server(env={**HANDOFF, "FANWIRE_WAKE_INTERVAL": "60"})
    with httpx.Client(base_url=server.url, trust_env=False, timeout=20) as http:
        assert http.post("/topics", json={"name": "quick"}).status_code == 201
    ws = Raw(server.port)
    ws.sock.settimeout(15)  # a quarter of the interval
    assert ws.json()["message"] == "connected"
    for i in range(5):  # each after the last one's ack: a round apart, before the fix
        ws.sock.sendall(
            text({"type": "publish", "topic": "quick", "data": i, "request_id": str(i)})
        )
        ack = ws.json()
        assert (ack["type"], ack["request_id"]) == ("ack", str(i))
    ws.close()

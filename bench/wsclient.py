"""A minimal blocking WebSocket client on a raw socket, for the scenarios that need one
client doing something the load generator does not: stall and resume reading (a
conflating topic), or subscribe and unsubscribe in a loop (presence churn). Text frames
only; answers pings; no extensions."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
from typing import Any

import orjson

from bench.servers import HOST


class WsClient:
    def __init__(self, port: int, path: str = "/ws", rcvbuf: int = 0, timeout: float = 10) -> None:
        self.sock = socket.socket()
        if rcvbuf:  # before connect, so the window the server sees is small from the start
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise OSError(f"WebSocket upgrade refused: {head[:80]!r}")

    def __enter__(self) -> WsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise OSError("connection closed")
        self.buf += chunk

    def _frame(self, opcode: int, payload: bytes) -> bytes:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return head + mask + masked

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(self._frame(0x1, orjson.dumps(message)))

    def _parse_one(self) -> tuple[int, bytes] | None:
        """The next complete frame in the buffer (opcode, payload), or None."""
        if len(self.buf) < 2:
            return None
        opcode, n = self.buf[0] & 0x0F, self.buf[1] & 0x7F
        start = 2
        if n == 126:
            if len(self.buf) < 4:
                return None
            n, start = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            if len(self.buf) < 10:
                return None
            n, start = struct.unpack("!Q", self.buf[2:10])[0], 10
        if len(self.buf) < start + n:
            return None
        payload, self.buf = self.buf[start : start + n], self.buf[start + n :]
        return opcode, payload

    def messages(self, until: float) -> list[dict[str, Any]]:
        """Every text message that arrives by `until` (monotonic) or in what one read
        brings; [] once `until` passed. Raises OSError once the server closed."""
        out: list[dict[str, Any]] = []
        while not out:
            while (frame := self._parse_one()) is not None:
                opcode, payload = frame
                if opcode == 0x1:
                    out.append(orjson.loads(payload))
                elif opcode == 0x9:  # ping
                    self.sock.sendall(self._frame(0xA, payload[:125]))
                elif opcode == 0x8:
                    raise OSError("server closed the WebSocket")
            if out:
                break
            remaining = until - time.monotonic()
            if remaining <= 0:
                return out
            self.sock.settimeout(remaining)
            try:
                self._fill()
            except TimeoutError:
                return out
        return out

    def wait_for(self, until: float, **fields: Any) -> dict[str, Any]:
        """The first message with these fields (others are dropped)."""
        while time.monotonic() < until:
            for msg in self.messages(until):
                if all(msg.get(k) == v for k, v in fields.items()):
                    return msg
        raise OSError(f"no message with {fields} in time")

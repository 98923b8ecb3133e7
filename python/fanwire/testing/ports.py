"""Loopback port helpers: pick a free port, tell whether a port is free."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """Return a TCP port on ``host`` that nothing listens on right now.

    The kernel picks it (bind to port 0); the socket is closed before returning, so a
    race with another process is possible but rare. Servers started by
    :mod:`fanwire.testing.servers` retry on a fresh port when they lose that race.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = HOST) -> bool:
    """Tell whether a server could listen on ``host:port`` now.

    Uses ``SO_REUSEADDR`` like uvicorn and redis do, so connections lingering in
    TIME_WAIT after a server stopped do not count; a listening socket does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True

"""The server matrix: every way fanwire can be served, as rows to parametrize tests over.

A :class:`Serving` names a server (uvicorn, hypercorn, granian), its HTTP and WebSocket
implementations, whether fanwire's native write paths are on, TLS, and how the
WebSocket test client connects (permessage-deflate or not). :data:`SERVINGS` is the
matrix fanwire's protocol suite runs on; :func:`serving_params` turns rows into pytest
parameters, each documented exception of a row marked with its reason
(``fanwire_exception``, listed at the end of the run). See docs/testing.md.

Module-scoped server fixtures parametrized this way run one row at a time::

    @pytest.fixture(scope="module", params=serving_params(SERVINGS))
    def serving(request):
        return request.param

    @pytest.fixture(scope="module")
    def server(fanwire_module_server, serving):
        srv = fanwire_module_server(serving=serving)
        yield srv
        srv.stop()  # before the next row starts its own
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from .processes import python_command

if TYPE_CHECKING:
    from .tls import Certificate

#: The app factory that ``python -m uvicorn ... --factory`` and the other servers run.
APP_FACTORY = "fanwire.server.app:create_app"

ServerName = Literal["uvicorn", "hypercorn", "granian"]

#: The HTTP and WebSocket implementations each server can run. uvicorn's are its
#: ``--http``/``--ws`` choices; hypercorn (h11, wsproto) and granian (Rust: hyper,
#: tungstenite) have one each, named here for the record.
IMPLEMENTATIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "uvicorn": (("httptools", "h11"), ("websockets-sansio", "websockets", "wsproto")),
    "hypercorn": (("h11",), ("wsproto",)),
    "granian": (("hyper",), ("tungstenite",)),
}


@dataclass(frozen=True)
class Serving:
    """One way to serve fanwire, and how the test clients reach it.

    ``server`` runs the app factory (``python -m uvicorn --factory``, ``python -m
    hypercorn``, ``python -m granian --interface asgi --factory``) with the ``http`` and
    ``ws`` implementations (see :data:`IMPLEMENTATIONS`). ``native=False`` turns fanwire's
    native write paths off (``FANWIRE_NATIVE_SSE=0``, ``FANWIRE_WS_BATCH_FRAMES=0``);
    ``ws_handoff=True`` hands WebSockets to the core (``FANWIRE_WS_HANDOFF=1``);
    they are only ever taken under uvicorn, and an SSE stream under TLS never takes
    them. ``tls`` serves HTTPS/WSS with the test certificate (:mod:`fanwire.testing.tls`).
    ``ws_compression`` is the client side: ``"deflate"`` makes :meth:`FanwireServer.ws_client`
    offer permessage-deflate; ``ws_deflate`` says whether the server accepts the offer
    (granian does not: its WebSocket library has no permessage-deflate, so the client
    gets uncompressed frames). uvicorn rows turn uvicorn's permessage-deflate on for a
    deflate client and off otherwise (``--ws-per-message-deflate``), as fanwire's
    ``ws_per_message_deflate`` setting would: off by default, so a deflate row is the
    setting turned on. ``name`` is the pytest id of the row.
    """

    name: str
    server: ServerName = "uvicorn"
    http: str = "httptools"
    ws: str = "websockets-sansio"
    native: bool = True
    tls: bool = False
    ws_compression: Literal["deflate"] | None = None
    ws_deflate: bool = True
    ws_handoff: bool = False

    def __post_init__(self) -> None:
        """Refuse an implementation the server does not have."""
        https, wss = IMPLEMENTATIONS[self.server]
        if self.http not in https or self.ws not in wss:
            raise ValueError(
                f"{self.server} runs HTTP {https} and WebSocket {wss}, "
                f"not {self.http!r}/{self.ws!r}"
            )

    @property
    def native_paths(self) -> bool:
        """True when fanwire's native write paths can be taken (uvicorn, native on)."""
        return self.server == "uvicorn" and self.native

    @property
    def negotiates_deflate(self) -> bool:
        """True when the WebSocket client offers permessage-deflate and the server agrees."""
        return self.ws_compression == "deflate" and self.ws_deflate

    @property
    def exceptions(self) -> tuple[str, ...]:
        """What the protocol suite cannot hold on this row, and what holds instead."""
        found: list[str] = []
        if self.ws_compression == "deflate" and not self.ws_deflate:
            found.append(
                f"{self.server} does not negotiate permessage-deflate ({self.ws} has no "
                "deflate): the client's offer is declined and every frame is uncompressed "
                "(asserted by test_permessage_deflate_as_negotiated)"
            )
        return tuple(found)

    def with_deflate(self) -> Serving:
        """The same row, with a WebSocket client that negotiates permessage-deflate."""
        return replace(self, name=f"{self.name}-deflate", ws_compression="deflate")

    def with_tls(self) -> Serving:
        """The same row served over TLS (HTTPS/WSS with the test certificate)."""
        return self if self.tls else replace(self, name=f"{self.name}-tls", tls=True)

    def env(self) -> dict[str, str]:
        """The ``FANWIRE_*`` settings of this row."""
        if self.native:
            return {"FANWIRE_WS_HANDOFF": "1"} if self.ws_handoff else {}
        return {"FANWIRE_NATIVE_SSE": "0", "FANWIRE_WS_BATCH_FRAMES": "0"}

    def command(
        self, app: str, factory: bool, host: str, port: int, cert: Certificate | None
    ) -> list[str]:
        """The command line that serves ``app`` on ``host:port``."""
        if self.server == "uvicorn":
            args = [app, *(["--factory"] if factory else []), "--http", self.http]
            args += ["--ws", self.ws, "--host", host, "--port", str(port)]
            deflate = "true" if self.ws_compression == "deflate" else "false"
            args += ["--ws-per-message-deflate", deflate]
            if cert:
                args += ["--ssl-keyfile", str(cert.keyfile), "--ssl-certfile", str(cert.certfile)]
            return python_command("-m", "uvicorn", *args)
        if self.server == "hypercorn":
            # hypercorn calls a factory given as "module:name()".
            args = [app + ("()" if factory else ""), "--bind", f"{host}:{port}"]
            if cert:
                args += ["--certfile", str(cert.certfile), "--keyfile", str(cert.keyfile)]
            return python_command("-m", "hypercorn", *args)
        args = ["--interface", "asgi", *(["--factory"] if factory else []), app]
        args += ["--host", host, "--port", str(port)]
        if cert:
            args += ["--ssl-certificate", str(cert.certfile), "--ssl-keyfile", str(cert.keyfile)]
        return python_command("-m", "granian", *args)


#: The protocol suite's matrix: together the rows cover every server, every HTTP and
#: WebSocket implementation of uvicorn, the native paths on and off, and TLS on and off
#: (docs/testing.md). The first row is what ``python -m fanwire`` runs.
SERVINGS: tuple[Serving, ...] = (
    Serving("uvicorn-httptools-native"),
    Serving("uvicorn-h11-wsproto-native", http="h11", ws="wsproto"),
    Serving("uvicorn-httptools-websockets-asgi", ws="websockets", native=False),
    Serving("uvicorn-tls", tls=True),
    Serving("hypercorn", server="hypercorn", http="h11", ws="wsproto"),
    Serving("granian", server="granian", http="hyper", ws="tungstenite", ws_deflate=False),
    # The core owns each WebSocket after its handshake (FANWIRE_WS_HANDOFF, on by default
    # since the protocol suite passes on it, so the native rows above take it too; its
    # deflate variant negotiates permessage-deflate, so it takes the Python path).
    Serving("uvicorn-httptools-ws-handoff", ws_handoff=True),
)


#: The representative subset for the slow and stress tests (docs/testing.md): one row
#: per server, and uvicorn with the native paths on and off.
REPRESENTATIVE: tuple[Serving, ...] = (SERVINGS[0], SERVINGS[2], SERVINGS[4], SERVINGS[5])

#: One TLS row per server (the TLS suite, tests/test_tls.py): uvicorn on both HTTP
#: implementations (native paths on, so the fallbacks under TLS are exercised) and
#: hypercorn and granian with their own TLS.
TLS_SERVINGS: tuple[Serving, ...] = (
    SERVINGS[3],
    SERVINGS[1].with_tls(),
    SERVINGS[4].with_tls(),
    SERVINGS[5].with_tls(),
)


def serving_params(rows: Iterable[Serving] = SERVINGS) -> list[Any]:
    """``pytest.param`` per row, id ``row.name``, marked ``fanwire_exception(reason)`` for
    each of its :attr:`~Serving.exceptions` (the plugin lists them after the run)."""
    import pytest

    return [
        pytest.param(
            row,
            id=row.name,
            marks=[pytest.mark.fanwire_exception(reason) for reason in row.exceptions],
        )
        for row in rows
    ]

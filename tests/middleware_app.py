"""The fanwire server with a middleware of the user's own, added after ``create_app``: a
WebSocket to ``/ws`` without ``?team=`` is refused (tests/test_user_middleware.py)."""

from typing import Any

from starlette.websockets import WebSocket

from fanwire.server.app import create_app


class TeamOnly:
    """Refuses a WebSocket handshake that names no team (an ASGI middleware)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and b"team=" not in scope["query_string"]:
            await WebSocket(scope, receive, send).close(4403)
            return
        await self.app(scope, receive, send)


def create() -> Any:
    app = create_app()
    app.add_middleware(TeamOnly)
    return app

"""The fanwire server with a middleware of the user's own, added after ``create_app``: a
WebSocket or a publish without ``?team=`` is refused (tests/test_user_middleware.py)."""

from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from fanwire.server.app import create_app


class TeamOnly:
    """Refuses a WebSocket handshake or a POST that names no team (an ASGI middleware)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan" or b"team=" in scope["query_string"]:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await WebSocket(scope, receive, send).close(4403)
        elif scope["method"] == "POST":
            await JSONResponse({"error": "NO_TEAM"}, status_code=403)(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create() -> Any:
    app = create_app()
    app.add_middleware(TeamOnly)
    return app

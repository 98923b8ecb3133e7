"""The app ``create_app`` returns sends ``/ws`` and HTTP publishes straight to their
handlers, past FastAPI's routing (about 12 KB less per WebSocket, about 3x the publish
rate), but a middleware the user adds to it still sees every WebSocket and publish."""

from pathlib import Path

import httpx
import pytest
import websockets

from fanwire.testing.aio import run

APP = {"app": "middleware_app:create", "factory": True, "app_dir": str(Path(__file__).parent)}


@pytest.fixture(scope="module")
def server(fanwire_module_server):
    return fanwire_module_server(env={"FANWIRE_DEMO_RATE": "0"}, **APP)


def test_user_middleware_sees_websockets(server):
    async def main():
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with server.ws_client():
                pass
        assert refused.value.response.status_code == 403
        async with server.ws_client(params={"team": "blue"}) as ws:
            assert ws.messages[0]["message"] == "connected"
            pong = await ws.ping(request_id="p-1")
            assert pong["type"] == "pong"

    run(main())


def test_user_middleware_sees_publishes(server):
    with httpx.Client(base_url=server.url, trust_env=False, timeout=10) as http:
        refused = http.post("/topics/news/messages", json={"data": 1})
        assert (refused.status_code, refused.json()) == (403, {"error": "NO_TEAM"})
        created = http.post("/topics", params={"team": "blue"}, json={"name": "news"})
        assert created.status_code == 201
        published = http.post("/topics/news/messages", params={"team": "blue"}, json={"data": 1})
        assert published.status_code == 202 and published.json()["message_id"]

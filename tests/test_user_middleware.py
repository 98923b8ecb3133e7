"""The app ``create_app`` returns sends ``/ws`` straight to its endpoint, past FastAPI's
routing (about 12 KB less per connection), but a middleware the user adds to it still
sees every WebSocket."""

from pathlib import Path

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

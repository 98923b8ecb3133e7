"""permessage-deflate is off by default (``FANWIRE_WS_PER_MESSAGE_DEFLATE``): a client
that offers it (every browser does) gets uncompressed frames and no zlib context on the
server, unless the setting turns it on. ``python -m fanwire`` passes it to uvicorn."""

import httpx
import pytest

from fanwire.testing.aio import run
from fanwire.testing.clients import WSClient


@pytest.mark.parametrize(("setting", "expected"), [(None, []), ("true", ["permessage-deflate"])])
def test_deflate_is_negotiated_only_when_the_setting_is_on(fanwire_server, setting, expected):
    env = {"FANWIRE_DEMO_RATE": "0"}
    if setting is not None:
        env["FANWIRE_WS_PER_MESSAGE_DEFLATE"] = setting
    srv = fanwire_server(env=env)
    assert httpx.post(srv.url + "/topics", json={"name": "z"}, trust_env=False).status_code == 201

    async def main():
        async with WSClient(srv.ws_url, compression="deflate") as ws:
            assert ws.extensions == expected
            await ws.subscribe("z")
            sent = []
            for n in range(5):
                reply = await ws.publish("z", {"n": n, "pad": "q" * 300})
                sent.append(reply["message_id"])
            await ws.recv_events(5)
            assert ws.event_ids() == sent

    run(main())

"""JWT auth (PROTOCOL.md, "Auth"): HS256 and RS256 bearer tokens, topic patterns, admin."""

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fanwire.testing.aio import run
from fanwire.testing.clients import SSEClient, WSClient

SECRET = "s3cret-for-tests-only-0123456789abcdef"
PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = (
    PRIVATE.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def hs(**claims):
    return jwt.encode(claims, SECRET, algorithm="HS256")


def rs(**claims):
    return jwt.encode(claims, PRIVATE, algorithm="RS256")


@pytest.fixture(scope="module")
def server(fanwire_module_server):
    env = {
        "FANWIRE_DEMO_RATE": "0",
        "FANWIRE_AUTH_ENABLED": "true",
        "FANWIRE_JWT_SECRET": SECRET,
        "FANWIRE_JWT_PUBLIC_KEY": PUBLIC_PEM,
    }
    srv = fanwire_module_server(env=env)
    admin = {"Authorization": f"Bearer {hs(admin=True)}"}
    for name in ("orders.eu", "orders.us", "secret"):
        httpx.post(srv.url + "/topics", json={"name": name}, headers=admin, trust_env=False)
    return srv


def call(srv, method, path, token=None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, srv.url + path, headers=headers, trust_env=False, **kwargs)


def test_http_needs_a_valid_token(server):
    for token in (None, "not-a-jwt", jwt.encode({"admin": True}, "wrong-" * 8, algorithm="HS256")):
        response = call(server, "POST", "/topics", token, json={"name": "x"})
        assert response.status_code == 401
        assert response.json()["error"] == "UNAUTHORIZED"
        assert response.headers["www-authenticate"] == "Bearer"
    assert call(server, "GET", "/stream", None, params={"topic": "secret"}).status_code == 401


def test_admin_claim_for_topic_management(server):
    user = hs(subscribe=["*"], publish=["*"])
    assert call(server, "POST", "/topics", user, json={"name": "x"}).status_code == 403
    assert call(server, "DELETE", "/topics/secret", user).status_code == 403
    assert call(server, "POST", "/topics", rs(admin=True), json={"name": "y"}).status_code == 201


def test_publish_patterns(server):
    token = rs(publish=["orders.*"])
    ok = call(server, "POST", "/topics/orders.eu/messages", token, json={"data": 1})
    assert ok.status_code == 202
    denied = call(server, "POST", "/topics/secret/messages", token, json={"data": 1})
    assert (denied.status_code, denied.json()["error"]) == (403, "FORBIDDEN")


def test_sse_with_access_token_query_and_patterns(server):
    token = hs(subscribe=["orders.*"])

    async def main():
        params = {"access_token": token}
        async with SSEClient(server.url, topics=["orders.eu", "orders.us"], params=params) as sse:
            await sse.read_until(lambda c: c.frames)
        await SSEClient(server.url, topics=["secret"], params=params, expect_status=403).connect()

    run(main())


def test_websocket_auth(server):
    token = hs(subscribe=["orders.*"], publish=["orders.eu"])

    async def main():
        denied = WSClient(server.ws_url, expect_connected=False)
        await denied.connect()
        assert await denied.wait_closed() == 1008
        assert denied.messages[0]["code"] == "UNAUTHORIZED"
        async with WSClient(server.ws_url, params={"access_token": token}) as ws:
            await ws.subscribe("orders.us")
            assert (await ws.subscribe("secret", check=False))["code"] == "FORBIDDEN"
            assert (await ws.publish("orders.us", 1, check=False))["code"] == "FORBIDDEN"
            await ws.publish("orders.eu", 1)
            assert not ws.closed  # FORBIDDEN keeps the connection
        headers = {"Authorization": f"Bearer {rs(subscribe=['*'])}"}
        async with WSClient(server.ws_url, headers=headers) as ws:
            await ws.subscribe("secret")

    run(main())

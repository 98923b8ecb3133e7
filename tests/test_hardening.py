"""Hostile input and noisy logs (issue 11, probing and review), each against a real server.

Every test provokes one defect the way any client could, and checks the protocol's answer:
an error code, never a 500, a silently closed socket, altered data or an ERROR log line.
The tests on the module servers run once per row of the server matrix
(fanwire.testing.matrix.SERVINGS, docs/testing.md): ``-k uvicorn-httptools-native`` picks
the default row.
"""

import asyncio
import base64
import itertools
import os
import socket
import time
from pathlib import Path

import httpx
import jwt
import orjson
import pytest
from matrix_support import serving_fixture
from websockets.exceptions import InvalidStatus

from fanwire.testing.aio import run
from fanwire.testing.clients import WSClient
from fanwire.testing.matrix import SERVINGS

SECRET = "hardening-secret-for-tests-0123456789abcdef"
HERE = Path(__file__).parent
_names = itertools.count(1)


def hs(**claims):
    return jwt.encode(claims, SECRET, algorithm="HS256")


ADMIN = hs(admin=True, subscribe=["*"], publish=["*"])


serving = serving_fixture(SERVINGS)


@pytest.fixture(scope="module")
def server(fanwire_module_server, serving):
    """No auth, topics created on first use."""
    env = {
        "FANWIRE_DEMO_RATE": "0",
        "FANWIRE_RETENTION": "50",
        "FANWIRE_AUTO_CREATE_TOPICS": "true",
    }
    srv = fanwire_module_server(env=env, name=f"open-{serving.name}", serving=serving)
    yield srv
    srv.stop()  # now, not at the module's end: the next row starts its own


@pytest.fixture(scope="module")
def auth_server(fanwire_module_server, serving):
    env = {
        "FANWIRE_DEMO_RATE": "0",
        "FANWIRE_AUTH_ENABLED": "true",
        "FANWIRE_JWT_SECRET": SECRET,
        "FANWIRE_AUTO_CREATE_TOPICS": "true",
    }
    srv = fanwire_module_server(env=env, name=f"auth-{serving.name}", serving=serving)
    yield srv
    srv.stop()


def new_topic():
    return f"h{os.getpid()}-{next(_names)}"


def post(srv, path, token=None, headers=None, **kwargs):
    headers = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
    return httpx.post(srv.url + path, headers=headers, verify=srv.verify, trust_env=False, **kwargs)


def stream_status(srv, params, headers=None):
    """Status and body of ``GET /stream`` (a 200 stream is closed at once)."""
    with httpx.stream(
        "GET",
        srv.url + "/stream",
        params=params,
        headers=headers,
        verify=srv.verify,
        trust_env=False,
        timeout=10,
    ) as response:
        body = response.read() if response.status_code != 200 else b""
        return response.status_code, (orjson.loads(body) if body else None)


def error_lines(srv):
    return [
        line
        for line in srv.log_text().splitlines()
        if line.startswith("ERROR") or "Traceback" in line
    ]


# -- 1. a crafted JWT header ---------------------------------------------------------------
def _segment(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "alg",
    [b'["HS256"]', b'{"HS256":true}', b"[" * 900 + b"]" * 900],
    ids=["list", "object", "nested"],
)
def test_jwt_whose_alg_is_a_list_or_object_is_unauthorized(auth_server, alg):
    """An unsigned token anyone can forge: 401 on REST and /stream, UNAUTHORIZED on /ws."""
    claims = orjson.dumps({"subscribe": ["*"], "publish": ["*"], "admin": True})
    header = b'{"alg":' + alg + b',"typ":"JWT"}'
    token = f"{_segment(header)}.{_segment(claims)}."
    topic = new_topic()
    response = post(auth_server, f"/topics/{topic}/messages", token, json={"data": 1})
    assert (response.status_code, response.json()["error"]) == (401, "UNAUTHORIZED")
    response = post(auth_server, "/topics", token, json={"name": topic})
    assert (response.status_code, response.json()["error"]) == (401, "UNAUTHORIZED")
    status, body = stream_status(auth_server, {"topic": topic, "access_token": token})
    assert (status, body["error"]) == (401, "UNAUTHORIZED")

    async def main():
        ws = auth_server.ws_client(params={"access_token": token}, expect_connected=False)
        await ws.connect()
        assert await ws.wait_closed() == 1008
        assert ws.messages[0]["code"] == "UNAUTHORIZED"

    run(main())


# -- 2. deep nesting in a WebSocket message ------------------------------------------------
def _deep(depth, kind="list"):
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


def _message(head, value):
    return head + value + ',"request_id":"deep"}'


def test_deeply_nested_websocket_message_gets_an_error_and_the_socket_keeps_working(server):
    topic = new_topic()
    publish = '{"type":"publish","topic":"' + topic + '","data":'
    cases = [
        (_message('{"type":', _deep(1000)), "INVALID_MESSAGE"),
        (_message('{"type":', _deep(1000, "dict")), "INVALID_MESSAGE"),
        (_message('{"type":"subscribe","topic":', _deep(1000)), "INVALID_MESSAGE"),
        (_message(publish, _deep(1000)), "INVALID_MESSAGE"),
        (_message('{"type":', _deep(5000)), "INVALID_JSON"),  # beyond orjson's depth limit
    ]

    async def main():
        async with server.ws_client() as ws:
            for raw, code in cases:
                start = len(ws.messages)
                await ws.send_raw(raw)
                reply = await ws.recv_until(type="error", start=start)
                assert reply["code"] == code, (raw[:60], reply)
                if code == "INVALID_MESSAGE":
                    assert reply["request_id"] == "deep"
                assert (await ws.ping())["type"] == "pong"  # the connection still works
            assert not ws.closed

    run(main())


# -- 3. a RuntimeError is a bug, not a client gone -----------------------------------------
def _wait_for_log(srv, text, timeout=10.0):
    deadline = time.monotonic() + timeout
    while text not in srv.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    return srv.log_text()


def test_a_bug_raising_runtime_error_in_a_websocket_handler_is_logged(fanwire_server):
    """hardening_app's broker raises RuntimeError on a publish to ``bug``: the server must
    log it (a traceback), not take it for a client that left and close the socket quietly.
    A client that really leaves logs nothing."""
    srv = fanwire_server(app="hardening_app:app", app_dir=str(HERE), name="buggy")

    async def main():
        async with WSClient(srv.ws_url) as ws:  # a client that subscribes and leaves
            await ws.subscribe("fine")
            await ws.publish("fine", 1)
        async with WSClient(srv.ws_url) as ws:
            await ws.send({"type": "publish", "topic": "bug", "data": 1, "request_id": "b"})
            await ws.wait_closed()

    run(main())
    log = _wait_for_log(srv, "RuntimeError: injected bug")
    assert "RuntimeError: injected bug" in log
    assert log.count("Traceback") == 1, log


# -- 4. claim patterns match in linear time ------------------------------------------------
GLOB_CASES = [
    ("exact", "exact", True),
    ("exact", "exactly", False),
    ("exact", "xexact", False),
    ("*", "anything", True),
    ("**", "x", True),
    ("pre.*", "pre.", True),
    ("pre.*", "pre.eu", True),
    ("pre.*", "preXeu", False),  # "." is literal
    ("*suf", "suf", True),
    ("*suf", "a.suf", True),
    ("*suf", "sufx", False),
    ("ab*ba", "abba", True),
    ("ab*ba", "aba", False),  # head and tail may not overlap
    ("ab*ba", "ab-x-ba", True),
    ("m*d*e", "mde", True),
    ("m*d*e", "m1d2e", True),
    ("m*d*e", "m1e2d", False),
    ("a*b*a", "abba", True),
    ("a*b*a", "aab", False),
    ("*a*a*", "aa", True),
    ("*a*a*", "ba", False),
    ("x*[y]", "x-[y]", True),  # no regex meaning
    ("x*[y]", "x-y", False),
]
LONG = "a." * 127 + "a"  # 255 characters, 127 dots
PATHOLOGICAL = ["*.*.*.*.*.*.*.*.x", "*a*a*a*a*a*a*a*a*b"]


def test_glob_match_edge_cases():
    from fanwire.names import glob_match

    for pattern, text, expected in GLOB_CASES:
        assert glob_match(pattern, text) is expected, (pattern, text)
    for pattern in PATHOLOGICAL:
        assert glob_match(pattern, LONG) is False
    assert glob_match(PATHOLOGICAL[0], LONG[:-1] + "x") is True
    assert glob_match(PATHOLOGICAL[1], "a" * 254 + "b") is True


def test_claim_patterns_through_the_server(auth_server):
    """Each pattern alone in a token's subscribe claim, against real subscribes; the
    pathological patterns against a 255-character topic are answered (they used to block
    the server's loop for seconds per subscribe with 4 stars, and far longer with 8)."""
    cases = [*GLOB_CASES, *((p, LONG, False) for p in PATHOLOGICAL)]
    cases.append((PATHOLOGICAL[0], LONG[:-1] + "x", True))

    async def main():
        for pattern, topic, allowed in cases:
            if not topic.replace(".", "").replace("-", "").isalnum():
                continue  # not a valid topic name: covered by the unit test only
            token = hs(subscribe=[pattern])
            async with auth_server.ws_client(params={"access_token": token}) as ws:
                reply = await ws.subscribe(topic, check=False)
                assert reply["type"] == ("ack" if allowed else "error"), (pattern, topic, reply)
                if not allowed:
                    assert reply["code"] == "FORBIDDEN"

    run(main())


# -- 5. token expiry on an open WebSocket --------------------------------------------------
def test_websocket_token_past_exp_cannot_subscribe_or_publish(auth_server):
    """After ``exp``: new subscribes and publishes get UNAUTHORIZED (request_id echoed);
    the connection and its existing subscriptions keep running."""
    kept, other = new_topic(), new_topic()
    exp = int(time.time()) + 2
    token = hs(subscribe=["*"], publish=["*"], exp=exp)

    async def main():
        async with auth_server.ws_client(params={"access_token": token}) as ws:
            await ws.subscribe(kept)
            await ws.publish(kept, "before")
            await asyncio.sleep(max(0.0, exp - time.time()) + 0.5)
            for reply in (
                await ws.subscribe(other, request_id="late-sub", check=False),
                await ws.publish(kept, "after", request_id="late-pub", check=False),
            ):
                assert (reply["type"], reply["code"]) == ("error", "UNAUTHORIZED"), reply
            assert reply["request_id"] == "late-pub"
            assert ws.of_type("error")[0]["request_id"] == "late-sub"
            response = post(auth_server, f"/topics/{kept}/messages", ADMIN, json={"data": "live"})
            assert response.status_code == 202
            events = await ws.recv_events(2, topic=kept)
            assert [e["data"] for e in events] == ["before", "live"]
            assert (await ws.ping())["type"] == "pong"
            assert not ws.closed

    run(main())


# -- 6. integer query parameters are plain ASCII digits ------------------------------------
NOT_PLAIN_DIGITS = ["1_0", " 5", "5 ", "\u0665", "+3", "-0", "0x5", "1e1", "\uff15", "9" * 5000]


def test_sse_integer_parameters_accept_only_plain_digits(server):
    topic = new_topic()
    assert post(server, "/topics", json={"name": topic}).status_code == 201
    for name in ("last_n", "queue_size"):
        for raw in NOT_PLAIN_DIGITS:
            status, body = stream_status(server, {"topic": topic, name: raw})
            assert (status, body and body["error"]) == (400, "INVALID_MESSAGE"), (name, raw)
        assert stream_status(server, {"topic": topic, name: "05"})[0] == 200


# -- 7. integers beyond 64 bits are refused, never turned into floats ----------------------
OUT_OF_RANGE = ["18446744073709551616", "-9223372036854775809", "1" + "0" * 40]
EDGES = '[18446744073709551615,-9223372036854775808,"123456789012345678901234567890",1.5e300]'
JSON = {"Content-Type": "application/json"}


def test_integers_beyond_64_bits_are_refused_on_every_publish_path(server, fanwire_broker):
    """orjson parses them as floats: the data would reach subscribers changed."""
    from fanwire.errors import InvalidMessage

    topic = new_topic()
    path = f"/topics/{topic}/messages"
    ws_publish = '{"type":"publish","topic":"' + topic + '","request_id":"big","data":'
    assert post(server, "/topics", json={"name": topic}).status_code == 201

    async def main():
        async with server.ws_client() as ws:
            await ws.subscribe(topic)
            for number in OUT_OF_RANGE:
                for data in (number, '{"a":[1,' + number + "]}"):
                    response = post(server, path, content='{"data":' + data + "}", headers=JSON)
                    assert response.status_code == 400, (data[:50], response.text)
                    assert response.json()["error"] == "INVALID_MESSAGE"
                    assert "64-bit" in response.json()["message"]
                    start = len(ws.messages)
                    await ws.send_raw(ws_publish + data + "}")
                    reply = await ws.recv_until(lambda m: m.get("request_id") == "big", start=start)
                    assert (reply["type"], reply["code"]) == ("error", "INVALID_MESSAGE")
                    assert "64-bit" in reply["message"]
            # what fits in 64 bits (and long digit runs in strings or floats) goes through
            # unchanged on both paths
            response = post(server, path, content='{"data":' + EDGES + "}", headers=JSON)
            assert response.status_code == 202, response.text
            await ws.send_raw(ws_publish + EDGES + "}")
            events = await ws.recv_events(2, topic=topic)
            assert [e["data"] for e in events] == [orjson.loads(EDGES)] * 2
            assert not ws.closed

    run(main())
    with pytest.raises(InvalidMessage, match="64-bit"):
        fanwire_broker.publish("anything", {"n": 2**64})


def test_the_long_digit_run_filter_sees_every_19_digit_run_in_any_input_type():
    """The filter in front of the exact check: a run it missed would let an integer
    beyond 64 bits through changed (as a float)."""
    from fanwire.jsoncheck import has_long_digit_run

    for text in ['{"a":' + n + "}" for n in OUT_OF_RANGE] + ["\u00e9 1234567890123456789 \u00e9"]:
        for raw in (text, text.encode(), bytearray(text.encode())):
            assert has_long_digit_run(raw), raw
    for text in ['{"a":123456789012345678}', "1234567890.123456789", "\u0661" * 30, ""]:
        assert not has_long_digit_run(text), text
        assert not has_long_digit_run(text.encode()), text


# -- 8. reserved event types ---------------------------------------------------------------
RESERVED = ["heartbeat", "gap", "topic_deleted", "shutdown", "error", "conflated", "join", "leave"]


def test_publishing_a_reserved_event_type_is_invalid(server, fanwire_broker):
    """The server's own notices use these: a publisher must not be able to fake one."""
    from fanwire.errors import InvalidMessage

    topic = new_topic()
    path = f"/topics/{topic}/messages"
    assert post(server, "/topics", json={"name": topic}).status_code == 201

    async def main():
        async with server.ws_client() as ws:
            await ws.subscribe(topic)
            for event in RESERVED:
                response = post(server, path, json={"data": 1, "event": event})
                assert (response.status_code, response.json()["error"]) == (
                    400,
                    "INVALID_MESSAGE",
                ), event
                reply = await ws.publish(topic, 1, event=event, request_id="r", check=False)
                assert (reply["type"], reply["code"]) == ("error", "INVALID_MESSAGE"), event
            assert post(server, path, json={"data": 1, "event": "message"}).status_code == 202
            await ws.publish(topic, 2, event="tick")
            events = await ws.recv_events(2, topic=topic)
            assert [e.get("event") for e in events] == ["message", "tick"]

    run(main())
    fanwire_broker.create_topic("t")
    for event in RESERVED:
        with pytest.raises(InvalidMessage):
            fanwire_broker.publish("t", 1, event=event)


# -- 9. what a client does is not a server error -------------------------------------------
def _settle(srv):
    """Let the server finish with what was provoked (a request after it, then a pause)."""
    assert httpx.get(srv.url + "/health", trust_env=False).status_code == 200
    time.sleep(1.0)


def test_client_leaving_mid_body_logs_no_error(fanwire_server):
    srv = fanwire_server(env={"FANWIRE_DEMO_RATE": "0"}, name="mid-body")
    for path in ("/topics/events/messages", "/topics"):
        with socket.create_connection(("127.0.0.1", srv.port)) as sock:
            head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            sock.sendall(f"{head}Content-Length: 1000\r\n\r\n".encode() + b'{"data": [1, 2')
            time.sleep(0.3)  # the server is reading the body
    _settle(srv)
    assert error_lines(srv) == [], srv.log_text()


def test_websocket_refused_at_the_connection_limit_logs_no_error(fanwire_server):
    env = {"FANWIRE_DEMO_RATE": "0", "FANWIRE_MAX_CONNECTIONS": "1"}
    srv = fanwire_server(env=env, name="limit")

    async def main():
        async with WSClient(srv.ws_url):
            for _ in range(3):
                with pytest.raises(InvalidStatus) as refused:
                    await WSClient(srv.ws_url).connect()
                assert refused.value.response.status_code == 503
                assert refused.value.response.headers["Retry-After"] == "1"
            assert stream_status(srv, {"topic": "events"})[0] == 503
            _settle(srv)

    run(main())
    assert error_lines(srv) == [], srv.log_text()

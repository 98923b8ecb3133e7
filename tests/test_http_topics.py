"""REST surface of PROTOCOL.md ("Topics over HTTP") against a real server."""

import httpx
import pytest

from fanwire.testing.clients import SSEClient


@pytest.fixture(scope="module")
def server(fanwire_module_server):
    return fanwire_module_server(env={"FANWIRE_DEMO_RATE": "0"})


def assert_error(response, status, code=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"}
    if code:
        assert body["error"] == code


def test_create_topic_is_idempotent(http):
    first = http.post("/topics", json={"name": "orders.eu-1_x"})
    again = http.post("/topics", json={"name": "orders.eu-1_x"})
    assert (first.status_code, first.json()) == (201, {"name": "orders.eu-1_x", "created": True})
    assert (again.status_code, again.json()) == (201, {"name": "orders.eu-1_x", "created": False})


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "bad name"}',
        b'{"name": "a\\r\\nb"}',
        b'{"name": ""}',
        b'{"name": "' + b"x" * 10_000 + b'"}',
        b'{"name": 5}',
        b'{"nom": "x"}',
        b'["orders"]',
        b"{not json",
        b"",
    ],
)
def test_create_topic_rejects_bad_names_and_bodies(http, body):
    response = http.post("/topics", content=body, headers={"content-type": "application/json"})
    assert_error(response, 400)


def test_list_topics_counts_subscribers_and_messages(server, http, topic):
    http.post(f"/topics/{topic}/messages", json={"data": 1})
    http.post(f"/topics/{topic}/messages", json={"data": 2})

    async def main():
        async with SSEClient(server.url, topics=[topic]) as sse:
            await sse.read_until(lambda c: c.retry is not None)
            rows = {t["name"]: t for t in http.get("/topics").json()["topics"]}
            assert rows[topic] == {"name": topic, "subscribers": 1, "messages": 2}

    from fanwire.testing.aio import run

    run(main())


def test_publish_answers_202_with_id_and_subscriber_count(http, topic):
    first = http.post(f"/topics/{topic}/messages", json={"data": {"qty": 3}})
    second = http.post(f"/topics/{topic}/messages", json={"data": None, "event": "tick"})
    assert first.status_code == second.status_code == 202
    assert set(first.json()) == {"message_id", "subscribers"}
    assert first.json()["subscribers"] == 0
    assert isinstance(first.json()["message_id"], str)
    assert first.json()["message_id"] != second.json()["message_id"]


@pytest.mark.parametrize(
    "body",
    [
        b"{oops",
        b"[1, 2]",
        b'{"event": "x"}',
        b'{"data": 1, "event": "a b"}',
        b'{"data": 1, "event": 7}',
        b'{"data": 1, "event": "x\\ny"}',
    ],
)
def test_publish_rejects_bad_bodies_with_400(http, topic, body):
    response = http.post(
        f"/topics/{topic}/messages", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 400)


def test_publish_to_unknown_topic_is_404(http):
    assert_error(http.post("/topics/nope-none/messages", json={"data": 1}), 404, "TOPIC_NOT_FOUND")


def test_publish_to_invalid_topic_is_400(http):
    assert_error(http.post("/topics/a%20b/messages", json={"data": 1}), 400, "INVALID_TOPIC")


def test_publish_over_the_payload_limit_is_413(http, topic):
    big = {"data": "x" * (64 * 1024 + 1)}
    assert_error(http.post(f"/topics/{topic}/messages", json=big), 413, "PAYLOAD_TOO_LARGE")
    huge = b'{"data": "' + b"y" * (2 * 1024 * 1024) + b'"}'
    response = http.post(
        f"/topics/{topic}/messages", content=huge, headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    fits = {"data": "x" * (64 * 1024 - 2)}  # the encoded string is exactly the limit
    assert http.post(f"/topics/{topic}/messages", json=fits).status_code == 202


def test_delete_topic_then_404(http, topic):
    response = http.delete(f"/topics/{topic}")
    assert response.status_code == 204
    assert response.content == b""
    assert_error(http.delete(f"/topics/{topic}"), 404, "TOPIC_NOT_FOUND")
    assert topic not in [t["name"] for t in http.get("/topics").json()["topics"]]


def test_health_body(http):
    response = http.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "uptime_seconds", "topic_count", "active_subscriber_count"}
    assert body["status"] == "healthy"
    assert isinstance(body["uptime_seconds"], float)


def test_stats_has_per_topic_counters_and_totals(http, topic):
    http.post(f"/topics/{topic}/messages", json={"data": 1})
    stats = http.get("/stats").json()
    assert stats["topics"][topic] == {"message_count": 1, "subscriber_count": 0, "dropped_count": 0}
    for key in (
        "topic_count",
        "subscriber_count",
        "published_count",
        "delivered_count",
        "dropped_count",
        "connections",
        "uptime_seconds",
    ):
        assert key in stats


def test_metrics_is_prometheus_text(http, topic):
    http.post(f"/topics/{topic}/messages", json={"data": 1})
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE fanwire_published_total counter" in text
    assert f'fanwire_topic_messages_total{{topic="{topic}"}} 1.0' in text
    assert 'fanwire_connections{transport="sse"}' in text


def test_openapi_describes_the_endpoints(http):
    spec = http.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/topics",
        "/topics/{name}",
        "/topics/{name}/messages",
        "/health",
        "/stats",
        "/metrics",
        "/stream",
    ):
        assert path in paths
    created = paths["/topics"]["post"]["responses"]["201"]["content"]["application/json"]
    assert created["schema"]["$ref"].endswith("/TopicCreated")
    assert "requestBody" in paths["/topics/{name}/messages"]["post"]


def test_dashboard_is_served(http):
    page = http.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "/static/dashboard.js" in page.text
    assert http.get("/static/dashboard.js").status_code == 200
    assert http.get("/static/dashboard.css").status_code == 200
    assert http.get("/static/..%2Fapp.py").status_code == 404


def test_limits_and_auto_create(fanwire_server):
    srv = fanwire_server(
        env={
            "FANWIRE_DEMO_RATE": "0",
            "FANWIRE_MAX_TOPICS": "2",
            "FANWIRE_AUTO_CREATE_TOPICS": "true",
            "FANWIRE_MAX_PAYLOAD": "100",
        }
    )
    with httpx.Client(base_url=srv.url, trust_env=False) as http:
        assert http.post("/topics/auto1/messages", json={"data": 1}).status_code == 202
        assert http.post("/topics", json={"name": "auto2"}).json()["created"] is True
        assert_error(http.post("/topics", json={"name": "auto3"}), 429, "LIMIT_REACHED")
        assert_error(http.post("/topics/auto1/messages", json={"data": "z" * 99}), 413)
        assert http.post("/topics/auto1/messages", json={"data": "z" * 98}).status_code == 202

"""Every example in ``examples/`` runs against a real server."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from fanwire.testing.aio import run
from fanwire.testing.clients import SSEClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def demo(fanwire_server):
    return fanwire_server(env={"FANWIRE_DEMO_RATE": "50"})


def run_example(*args, timeout=60):
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_sse_client_prints_messages_in_order(demo):
    lines = run_example(
        str(EXAMPLES / "sse_client.py"), "--url", demo.url, "--count", "5", "--last-n", "3"
    )
    assert len(lines) == 5
    ids = [line.split()[0] for line in lines]
    assert [line.split()[1] for line in lines] == ["events"] * 5
    assert [int(i.rsplit("-", 1)[1]) for i in ids] == sorted(int(i.rsplit("-", 1)[1]) for i in ids)
    assert "symbol" in orjson.loads(lines[0].split(" ", 2)[2])


def test_ws_client_subscribes_and_publishes(demo):
    httpx.post(demo.url + "/topics", json={"name": "chat"}, trust_env=False)
    lines = run_example(
        str(EXAMPLES / "ws_client.py"),
        "--url",
        demo.ws_url,
        "--topic",
        "chat",
        "--count",
        "1",
        "--publish",
        '{"text": "hi"}',
    )
    _id, topic, data = lines[0].split(" ", 2)
    assert (topic, orjson.loads(data)) == ("chat", {"text": "hi"})


def curl_blocks():
    text = (EXAMPLES / "curl.md").read_text()
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def test_curl_commands(fanwire_server):
    srv = fanwire_server(env={"FANWIRE_DEMO_RATE": "0"})
    env = {**os.environ, "FANWIRE": srv.url}
    outputs = []
    for block in curl_blocks():
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, (block, done.stderr)
        outputs.append(done.stdout)
    created, published, replay, resumed, listing, errors, deleted = outputs
    assert orjson.loads(created) == {"name": "orders", "created": True}
    message_id = orjson.loads(published)["message_id"]
    assert f"id: {message_id}\nevent: order_placed\n" in replay
    assert "event: gap" in resumed and f"id: {message_id}" in resumed
    assert '"name":"orders"' in listing and "fanwire_published_total 1.0" in listing
    assert errors.strip().endswith("404") and "TOPIC_NOT_FOUND" in errors
    assert deleted.strip() == "204"


def test_embedded_app_publishes_from_a_route_and_a_thread(fanwire_server):
    srv = fanwire_server(app="embed_app:app", app_dir=str(EXAMPLES), name="embed_app")

    async def main():
        async with SSEClient(srv.url, topics=["clock", "orders"]) as sse:
            await sse.read_until(
                lambda c: any(f.event == "tick" for f in c.frames), what="a clock tick"
            )
            async with httpx.AsyncClient(base_url=srv.url, trust_env=False) as http:
                assert (await http.get("/hello")).json() == {"hello": "world"}
                placed = await http.post("/orders", json={"item": "tea", "qty": 2})
                assert placed.status_code == 201
            order = await sse.read_until_event("order_placed")
            assert order.id == placed.json()["message_id"]
            assert order.data["data"] == {"item": "tea", "qty": 2}
            ticks = [f.data["data"]["tick"] for f in sse.of_event("tick")]
            assert ticks == sorted(ticks)

    run(main())
    code = srv.stop()
    # Plain uvicorn re-raises the SIGTERM it handled once it is done: -15 is its clean exit.
    assert code in (0, -signal.SIGTERM), srv.log_text()
    assert "Application shutdown complete" in srv.log_text()
    assert "Traceback" not in srv.log_text()

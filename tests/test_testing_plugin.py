"""Tests of fanwire.testing itself (servers, clients, assertions, load, plugin hooks).

They run against ``tests/selftest_app.py`` (a tiny app speaking a subset of
PROTOCOL.md) and a real redis-server and Chromium, so they need neither fanwire's server
nor its compiled core.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from conftest import plugin_autoloaded

from fanwire.testing.aio import run
from fanwire.testing.assertions import assert_in_order
from fanwire.testing.clients import (
    Gap,
    SSEClient,
    UnexpectedStatus,
    WSClient,
    WSErrorReply,
)
from fanwire.testing.load import run_load
from fanwire.testing.ports import port_is_free
from fanwire.testing.processes import ServerStartError
from fanwire.testing.servers import FanwireServer

# A tiny app speaking a subset of the protocol, with switches for failure modes (tests/).
SELFTEST = {"app": "selftest_app:app", "app_dir": str(Path(__file__).resolve().parent)}


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def publish(server, topic, data, event=None):
    body = {"data": data} if event is None else {"data": data, "event": event}
    response = httpx.post(f"{server.url}/topics/{topic}/messages", json=body, trust_env=False)
    assert response.status_code == 202, response.text
    return response.json()["message_id"]


def create_topic(server, name):
    response = httpx.post(f"{server.url}/topics", json={"name": name}, trust_env=False)
    assert response.status_code == 201, response.text


# -- plugin loading ------------------------------------------------------------------------


def test_plugin_module_imports_without_core_or_test_dependencies():
    # `fanwire` itself is replaced by a bare package, so only fanwire.testing is judged.
    testing_dir = os.path.dirname(__import__("fanwire.testing").testing.__file__)
    code = textwrap.dedent(f"""
        import sys, types
        pkg = types.ModuleType("fanwire")
        pkg.__path__ = [{os.path.dirname(testing_dir)!r}]
        sys.modules["fanwire"] = pkg
        blocked = ["fanwire._core", "httpx", "httpx_sse", "websockets", "playwright", "orjson"]
        for name in blocked:
            sys.modules[name] = None
        import fanwire.testing.plugin
        loaded = [n for n in blocked if sys.modules.get(n) is not None]
        print("ok", loaded)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok []"


def test_plugin_is_registered_once(request):
    manager = request.config.pluginmanager
    module = sys.modules["fanwire.testing.plugin"]
    names = [name for name, plugin in manager.list_name_plugin() if plugin is module]
    assert len(names) == 1
    assert names[0] == ("fanwire" if plugin_autoloaded() else "fanwire.testing.plugin")


# -- servers -------------------------------------------------------------------------------


def test_free_port_is_free(free_port):
    assert 1024 < free_port < 65536
    assert port_is_free(free_port)


def test_fanwire_server_default_command_runs_fanwire_module():
    server = FanwireServer(port=12345, args=["--workers", "2"])
    assert server.command() == [
        sys.executable, "-m", "fanwire", "--host", "127.0.0.1", "--port", "12345",
        "--workers", "2",
    ]  # fmt: skip
    assert server.url == "http://127.0.0.1:12345"
    assert server.ws_url == "ws://127.0.0.1:12345/ws"


def test_server_starts_answers_health_and_stops(fanwire_server):
    server = fanwire_server(**SELFTEST)
    assert server.url == f"http://127.0.0.1:{server.port}"
    response = httpx.get(server.url + "/health", trust_env=False)
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"
    pid = server.pid
    assert pid is not None and pid_alive(pid)
    code = server.stop()
    # uvicorn re-raises the SIGTERM it handled gracefully, so -15 is a clean exit too.
    assert code in (0, -15), server.log_text()
    assert "Application shutdown complete" in server.log_text()
    assert server.pid is None and not pid_alive(pid)
    assert port_is_free(server.port)
    assert server.stop() == code


def test_server_env_and_args_reach_the_process(fanwire_server):
    server = fanwire_server(
        **SELFTEST, env={"SELFTEST_HEALTH_DELAY": "1"}, args=["--log-level", "info"]
    )
    log = server.log_text()
    assert '"GET /health HTTP/1.1" 503' in log  # it waited through the delay
    assert "--log-level info" in log
    quiet = fanwire_server(**SELFTEST, args=["--log-level", "warning"])
    assert "Application startup complete" not in quiet.log_text()


def test_server_that_fails_at_start_raises_with_its_log(fanwire_server):
    with pytest.raises(ServerStartError) as error:
        fanwire_server(**SELFTEST, env={"SELFTEST_FAIL_AT_START": "1"})
    assert "exited with code" in str(error.value)
    assert "selftest app told to fail at start" in str(error.value)


def test_server_never_healthy_times_out_and_is_stopped(fanwire_log_dir):
    server = FanwireServer(
        **SELFTEST,
        env={"SELFTEST_HEALTH_DELAY": "1000"},
        # Long enough for uvicorn to start and answer 503 on a loaded 2-core machine (at
        # 1.5 s it sometimes had not started yet, so the log had no 503 in it).
        start_timeout=10.0,
        log_dir=fanwire_log_dir,
    )
    with pytest.raises(ServerStartError) as error:
        server.start()
    assert "was not ready" in str(error.value)
    assert "503" in str(error.value)  # the log is in the message
    assert not server.running and port_is_free(server.port)


def test_stop_kills_a_server_that_ignores_sigterm(fanwire_server):
    server = fanwire_server(**SELFTEST, env={"SELFTEST_IGNORE_SIGTERM": "1"})
    pid = server.pid
    assert server.stop(timeout=1.0) == -9
    assert not pid_alive(pid)


def test_restart_keeps_the_port_and_sse_resumes_with_a_gap(fanwire_server):
    server = fanwire_server(**SELFTEST)
    port, first_pid = server.port, server.pid

    async def before():
        async with SSEClient(server.url) as client:
            ids = [publish(server, "events", {"n": n}) for n in range(3)]
            await client.read_messages(3)
            assert_in_order(client.sequence(), ids)
            return client.last_id

    last_id = run(before())
    server.restart()
    assert server.port == port and server.pid != first_pid

    async def after():
        # The new run forgot every id: the resume id gets a gap notice, then live ones.
        async with SSEClient(server.url, resume_from=last_id) as client:
            await client.read_until_event("gap")
            ids = [publish(server, "events", {"n": n}) for n in range(2)]
            await client.read_messages(2)
            assert client.of_event("gap")[0].data == {"topic": "events", "first_available": None}
            assert_in_order(client.sequence(), ids)

    run(after())


def test_redis_server_stops_and_restarts_on_the_same_port(redis_server):
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.ping()
    assert redis_server.stop() == 0
    assert not redis_server.ping() and port_is_free(redis_server.port)
    port = redis_server.port
    redis_server.restart()
    assert redis_server.port == port and redis_server.ping()


# -- SSE client ----------------------------------------------------------------------------


def test_sse_client_replays_resumes_and_reads_live(fanwire_server):
    server = fanwire_server(**SELFTEST)
    create_topic(server, "orders")
    first = [publish(server, "orders", {"n": n}) for n in range(5)]

    async def main():
        async with SSEClient(server.url, topics=["orders"], last_n=2) as client:
            await client.read_messages(2)
            assert client.status_code == 200
            assert client.headers["content-type"].startswith("text/event-stream")
            assert client.retry == 1000
            more = [publish(server, "orders", {"n": n}, event="tick") for n in range(3)]
            await client.read_messages(5)
            assert_in_order(client.sequence("orders"), first[-2:] + more)
            assert [f.event for f in client.messages] == ["message"] * 2 + ["tick"] * 3
            assert client.messages[0].data["data"] == {"n": 3}
        async with SSEClient(server.url, topics=["orders"], resume_from=first[1]) as header:
            await header.read_messages(6)
            assert_in_order(header.sequence(), first[2:] + more)
        async with SSEClient(server.url, topics=["orders"], last_event_id=first[3]) as query:
            await query.read_messages(4)
            assert_in_order(query.sequence(), first[4:] + more)

    run(main())


def test_sse_client_multiple_topics_and_heartbeats(fanwire_server):
    server = fanwire_server(**SELFTEST, env={"SELFTEST_HEARTBEAT": "0.2"})
    create_topic(server, "a")
    create_topic(server, "b")

    async def main():
        async with SSEClient(server.url, topics=["a", "b"]) as client:
            beat = await client.read_until_event("heartbeat")
            assert set(beat.data) == {"ts"}
            ids = [publish(server, topic, {}) for topic in ("a", "b", "a")]
            await client.read_messages(3)
            assert_in_order(client.sequence(), ids)
            assert_in_order(client.sequence("a"), [ids[0], ids[2]])
            again = await client.read_until_event("heartbeat", start=len(client.frames))
            assert again is not beat

    run(main())


def test_sse_client_unexpected_status(fanwire_server):
    server = fanwire_server(**SELFTEST)

    async def main():
        with pytest.raises(UnexpectedStatus, match="404"):
            await SSEClient(server.url, topics=["missing"]).connect()
        client = await SSEClient(server.url, topics=["missing"], expect_status=404).connect()
        assert client.status_code == 404 and b"missing" in client.body
        await client.close()

    run(main())


def test_stalled_sse_client_makes_the_server_drop(fanwire_server):
    server = fanwire_server(**SELFTEST)

    async def main():
        async with SSEClient(
            server.url, queue_size=10, policy="drop_oldest", stalled=True, receive_buffer=4096
        ) as client:
            response = httpx.post(
                f"{server.url}/topics/events/burst",
                json={"count": 3000, "size": 1000},
                trust_env=False,
                timeout=30,
            )
            ids = response.json()["message_ids"]
            client.resume()
            await client.read_until(lambda c: ids[-1] in c.ids, timeout=30, what="last id")
            sequence = client.sequence()
            assert any(isinstance(item, Gap) for item in sequence)
            assert len(client.ids) < len(ids)
            assert_in_order(sequence, ids, policy="drop_oldest", exact_dropped_counts=True)
            with pytest.raises(AssertionError, match="no drop is allowed"):
                assert_in_order(sequence, ids)

    run(main())


# -- WebSocket client ----------------------------------------------------------------------


def test_ws_client_subscribe_publish_ping_and_errors(fanwire_server):
    server = fanwire_server(**SELFTEST)
    create_topic(server, "orders")
    old = [publish(server, "orders", {"n": n}) for n in range(4)]

    async def main():
        async with WSClient(server.ws_url) as ws:
            assert ws.client_id == "selftest"
            ack = await ws.subscribe("orders", last_n=2, request_id="sub-1")
            assert ack["type"] == "ack" and ack["request_id"] == "sub-1"
            ids = [(await ws.publish("orders", {"n": n}))["message_id"] for n in range(3)]
            await ws.recv_events(5)
            assert_in_order(ws.sequence("orders"), old[-2:] + ids)
            index = ws.messages.index(ack)
            assert all(m["type"] != "event" for m in ws.messages[:index])
            assert (await ws.ping(request_id="p"))["type"] == "pong"
            with pytest.raises(WSErrorReply) as error:
                await ws.subscribe("nope")
            assert error.value.code == "TOPIC_NOT_FOUND"
            start = len(ws.messages)
            await ws.send_raw("{not json")
            bad = await ws.recv_until(type="error", start=start)
            assert bad["code"] == "INVALID_JSON"
            assert (await ws.ping())["type"] == "pong"  # still open
        async with WSClient(server.ws_url) as resumed:
            await resumed.subscribe("orders", since=old[2])
            await resumed.recv_events(4)
            assert_in_order(resumed.sequence(), old[3:] + ids)

    run(main())


def test_ws_recv_until_times_out_with_what_arrived(fanwire_server):
    server = fanwire_server(**SELFTEST)

    async def main():
        async with WSClient(server.ws_url) as ws:
            with pytest.raises(TimeoutError, match="'message': 'connected'"):
                await ws.recv_until(type="event", timeout=0.3)

    run(main())


# -- assertions ----------------------------------------------------------------------------

PUBLISHED = ["e-1", "e-2", "e-3", "e-4", "e-5"]


def test_assert_in_order_accepts_exact_delivery():
    assert_in_order(list(PUBLISHED), PUBLISHED)


@pytest.mark.parametrize(
    ("received", "message"),
    [
        (["e-1", "e-2", "e-2", "e-3", "e-4", "e-5"], "duplicate"),
        (["e-1", "e-3", "e-2", "e-4", "e-5"], "out of order"),
        (["e-1", "e-2", "e-4", "e-5"], "missing before 'e-4'"),
        (["e-1", "e-2", "e-3"], "never arrived"),
        (["e-1", "x-9"], "never published"),
        (["e-1", Gap(dropped=2), "e-4", "e-5"], "no drop is allowed"),
        ([Gap.resume("e-3"), "e-4", "e-5"], "first_available='e-3'"),
    ],
)
def test_assert_in_order_rejects(received, message):
    with pytest.raises(AssertionError, match=message):
        assert_in_order(received, PUBLISHED)


def test_assert_in_order_allows_only_announced_drops():
    assert_in_order(["e-1", Gap(dropped=2), "e-4", "e-5"], PUBLISHED, policy="drop_oldest")
    assert_in_order([Gap.resume("e-3"), "e-3", "e-4", "e-5"], PUBLISHED)
    assert_in_order([Gap.resume(None), "e-1", "e-2", "e-3", "e-4", "e-5"], PUBLISHED)
    with pytest.raises(AssertionError, match="missing"):
        assert_in_order(["e-1", "e-4", Gap(dropped=2), "e-5"], PUBLISHED, allow_gaps=True)
    with pytest.raises(AssertionError, match="announced 1 dropped but 2"):
        assert_in_order(
            ["e-1", Gap(dropped=1), "e-4", "e-5"], PUBLISHED, allow_gaps=True,
            exact_dropped_counts=True,
        )  # fmt: skip
    assert_in_order(["e-1", "e-2"], PUBLISHED, policy="disconnect")
    with pytest.raises(AssertionError, match="no drop"):
        assert_in_order(["e-1", Gap(dropped=1), "e-3"], PUBLISHED, policy="disconnect")


# -- load helper ---------------------------------------------------------------------------


def test_load_helper_delivers_everything_to_every_client(fanwire_server):
    server = fanwire_server(**SELFTEST)
    result = run(run_load(server.url, sse_clients=5, ws_clients=5, rate=50, duration=1.0, drain=10))
    assert result.errors == []
    assert result.connected == 10 and result.published == 50
    assert result.per_client_delivered == [50] * 10
    assert result.delivered == result.expected == 500
    assert result.max_lag == 0 and all(result.per_client_in_order)
    assert set(result.latency) == {"p50", "p90", "p99", "max"}
    assert result.latency_samples == result.delivered  # every receipt was timed


# -- browser -------------------------------------------------------------------------------


def test_chromium_eventsource_receives_a_replayed_message(fanwire_server, chromium_browser):
    server = fanwire_server(**SELFTEST)
    message_id = publish(server, "events", {"hello": "browser"})
    page = chromium_browser.new_page()
    page.goto(server.url + "/health")
    got = page.evaluate(
        """() => new Promise((resolve, reject) => {
            const source = new EventSource("/stream?last_n=1");
            source.onmessage = (e) => { source.close(); resolve([e.lastEventId, e.data]); };
            setTimeout(() => reject(new Error("no message")), 10000);
        })"""
    )
    assert got[0] == message_id
    assert '"hello":"browser"' in got[1]


# -- plugin hooks, seen from an inner pytest run -------------------------------------------


def inner_args():
    load = [] if plugin_autoloaded() else ["-p", "fanwire.testing.plugin"]
    return ["-p", "no:cacheprovider", *load]


def test_failed_test_report_includes_server_log(pytester):
    pytester.makepyfile(
        f"""
        def test_fails(fanwire_server):
            fanwire_server(**{SELFTEST!r})
            assert False, "boom"
        """
    )
    result = pytester.runpytest_subprocess(*inner_args())
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*fanwire 'selftest_app:app' log*"])
    result.stdout.fnmatch_lines(["*Application startup complete*"])


def test_session_fails_when_a_server_is_left_running(pytester):
    pytester.makepyfile(
        f"""
        from fanwire.testing.servers import FanwireServer

        def test_leaks(tmp_path):
            server = FanwireServer(**{SELFTEST!r}).start()
            print("PID", server.pid)
        """
    )
    result = pytester.runpytest_subprocess("-s", *inner_args())
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*processes or ports left behind*", "*is still running*"])
    pid = int(re.search(r"PID (\d+)", result.stdout.str()).group(1))
    assert not pid_alive(pid)

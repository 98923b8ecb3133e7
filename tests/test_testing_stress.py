"""fanwire.testing's stress helper and native load generator, against fanwire's server."""

import shutil
import subprocess
from pathlib import Path

import pytest

from fanwire.testing.load import run_native
from fanwire.testing.stress import ClientResult, StressReport, stress

LOADGEN_SRC = Path(__file__).resolve().parent.parent / "bench" / "loadgen" / "main.cpp"


@pytest.fixture
def server(fanwire_server):
    return fanwire_server(env={"FANWIRE_DEMO_RATE": "0"})


def test_stress_delivers_everything_in_order_around_stalled_clients(server):
    report = stress(server, sse_clients=20, ws_clients=20, messages=200, stalled=2)
    report.assert_stalled_did_not_hurt()
    assert report.published == 200
    assert [c.received for c in report.clients] == [200] * 40
    assert len(report.stalled) == 4 and report.stalled_jammed
    assert 0 < report.dropped_during_run <= 4 * 200
    assert "20 SSE + 20 WS clients (+4 stalled)" in report.summary()


def test_stress_runs_over_tls_with_the_servers_own_clients(fanwire_server):
    # The clients come from the handle (server.sse_client/ws_client), so they speak TLS.
    server = fanwire_server(env={"FANWIRE_DEMO_RATE": "0"}, tls=True)
    report = stress(server, sse_clients=3, ws_clients=3, messages=30, stalled=1)
    report.assert_stalled_did_not_hurt()
    assert [c.received for c in report.clients] == [30] * 6


def test_stress_without_a_stalled_client_cannot_claim_it_did_not_hurt(server):
    report = stress(server, sse_clients=2, ws_clients=2, messages=20, stalled=0)
    report.assert_all_delivered_in_order()
    with pytest.raises(AssertionError, match="no stalled client"):
        report.assert_stalled_did_not_hurt()


def test_stress_publishes_through_the_apps_route_and_reports_its_errors(server):
    report = stress(
        server,
        sse_clients=1,
        ws_clients=1,
        messages=3,
        stalled=0,
        publish=lambda seq: ("/topics/nope/messages", {"data": {"seq": seq}}),
    )
    assert report.published == 0 and len(report.publish_errors) == 3
    assert "answered 404" in report.publish_errors[0]
    with pytest.raises(AssertionError, match="only 0 of 3 messages were published"):
        report.assert_all_delivered_in_order()


@pytest.mark.parametrize(
    "seqs, problem",
    [
        ([0, 2], "got seq 2 where 1 was due (skipping some), after 1 in order"),
        ([0, 1, 1], "got seq 1 where 2 was due (a duplicate or older one), after 2 in order"),
        ([1, 0], "got seq 1 where 0 was due (skipping some), after 0 in order"),
    ],
)
def test_client_result_flags_the_first_gap_duplicate_or_reordering(seqs, problem):
    client = ClientResult("ws", 7)
    for seq in [*seqs, "not-a-seq"]:
        client.got({"seq": seq}, "seq")
    assert client.problem == problem and client.other_messages == 1
    report = StressReport(topic="t", messages=3, published=3, clients=[client])
    with pytest.raises(AssertionError, match=r"ws#7: got seq"):
        report.assert_all_delivered_in_order()


def test_report_names_a_client_that_missed_the_tail():
    client = ClientResult("sse", 0)
    for seq in range(2):
        client.got({"seq": seq}, "seq")
    report = StressReport(topic="t", messages=3, published=3, clients=[client])
    with pytest.raises(AssertionError, match="sse#0: received 2 of 3"):
        report.assert_all_delivered_in_order()


def test_run_native_drives_the_cpp_load_generator(server, tmp_path):
    compiler = shutil.which("g++") or shutil.which("c++")
    assert compiler, "g++ is needed (CI installs it)"
    binary = tmp_path / "loadgen"
    subprocess.run(
        [compiler, "-O1", "-std=c++20", "-pthread", str(LOADGEN_SRC), "-o", str(binary)],
        check=True,
        timeout=300,
    )
    result = run_native(
        binary,
        server.url,
        topic="native",
        sse_clients=10,
        ws_clients=10,
        rate=50,
        duration=1.0,
        drain=10,
        payload_bytes=64,
    )
    assert result.native and result.errors == []
    assert result.connected == 20 and result.published == 50
    assert result.per_client_delivered == [50] * 20 and result.max_lag == 0
    assert all(result.per_client_in_order) and result.delivered == result.expected
    assert set(result.latency) == {"p50", "p90", "p99", "max"}

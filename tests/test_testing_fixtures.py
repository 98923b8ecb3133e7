"""Plugin fixtures added for shared servers and brokers (seen from inner pytest runs)."""

from pathlib import Path

import pytest
from conftest import plugin_autoloaded

# A tiny app speaking a subset of the protocol, with switches for failure modes (tests/).
SELFTEST = {"app": "selftest_app:app", "app_dir": str(Path(__file__).resolve().parent)}


def inner_args():
    load = [] if plugin_autoloaded() else ["-p", "fanwire.testing.plugin"]
    return ["-p", "no:cacheprovider", *load]


def test_module_server_is_shared_stopped_after_the_module_and_logged_on_failure(pytester):
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.fixture(scope="module")
        def server(fanwire_module_server):
            return fanwire_module_server(**{SELFTEST!r})

        def test_one(server):
            pytest.shared = (server.pid, server.port)

        def test_two(server):
            assert (server.pid, server.port) == pytest.shared
            assert False, "boom"
        """
    )
    result = pytester.runpytest_subprocess(*inner_args())
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the failure only, nothing left behind
    result.stdout.fnmatch_lines(["*fanwire 'selftest_app:app' log*"])
    result.stdout.no_fnmatch_line("*left behind*")


def test_fanwire_broker_is_closed_at_teardown(pytester):
    pytester.makepyfile(
        """
        import fanwire
        import pytest

        def test_use(fanwire_broker):
            fanwire_broker.create_topic("t")
            fanwire_broker.publish("t", 1)
            pytest.kept = fanwire_broker

        def test_closed():
            with pytest.raises(fanwire.ShuttingDown):
                pytest.kept.publish("t", 2)
        """
    )
    result = pytester.runpytest_subprocess(*inner_args())
    result.assert_outcomes(passed=2)


def test_matrix_rows_run_one_at_a_time_with_their_own_logs_and_listed_exceptions(pytester):
    """A module parametrized with serving_params: each row's server is the way the row
    says (its log shows the server), the previous row's is stopped before the next
    starts, a failure reports only its own row's log, and a documented exception is
    listed after the run."""
    pytester.makepyfile(
        f"""
        import os
        import pytest
        from fanwire.testing.matrix import Serving, serving_params

        ROWS = [
            Serving("first", http="h11", ws="wsproto", native=False),
            Serving("second", server="hypercorn", http="h11", ws="wsproto"),
            Serving("third", server="granian", http="hyper", ws="tungstenite",
                    ws_deflate=False).with_deflate(),
        ]
        PIDS = {{}}

        @pytest.fixture(scope="module", params=serving_params(ROWS))
        def server(fanwire_module_server, request):
            srv = fanwire_module_server(**{SELFTEST!r}, serving=request.param)
            yield srv
            srv.stop()

        def test_row(server):
            for name, pid in PIDS.items():
                assert not os.path.exists(f"/proc/{{pid}}/cmdline"), name + " still runs"
            PIDS[server.serving.name] = server.pid
            print("COMMAND", " ".join(server.command()))
            assert server.serving.server != "granian", "boom"
        """
    )
    result = pytester.runpytest_subprocess("-s", *inner_args())
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "--http h11 --ws wsproto" in out and "-m hypercorn" in out and "-m granian" in out
    result.stdout.fnmatch_lines(["*fanwire 'third-deflate' log*"])
    result.stdout.no_fnmatch_line("*fanwire 'first' log*")
    result.stdout.no_fnmatch_line("*fanwire 'second' log*")
    result.stdout.fnmatch_lines(
        [
            "*fanwire matrix: documented exceptions*",
            "granian does not negotiate permessage-deflate*1 test(s) on such rows*",
        ]
    )
    result.stdout.no_fnmatch_line("*left behind*")


def test_every_value_of_every_dimension_is_in_the_matrix():
    from fanwire.testing.matrix import IMPLEMENTATIONS, SERVINGS

    assert {row.server for row in SERVINGS} == set(IMPLEMENTATIONS)
    for server, (https, wss) in IMPLEMENTATIONS.items():
        rows = [row for row in SERVINGS if row.server == server]
        assert {row.http for row in rows} == set(https)
        assert {row.ws for row in rows} == set(wss)
    uvicorn = [row for row in SERVINGS if row.server == "uvicorn"]
    assert {row.native for row in uvicorn} == {True, False}
    assert {row.tls for row in SERVINGS} == {True, False}
    assert len({row.name for row in SERVINGS}) == len(SERVINGS)


def test_a_serving_refuses_an_implementation_its_server_does_not_have():
    from fanwire.testing.matrix import Serving

    with pytest.raises(ValueError, match="hypercorn runs HTTP"):
        Serving("bad", server="hypercorn", http="httptools", ws="wsproto")
    with pytest.raises(ValueError, match="uvicorn runs"):
        Serving("bad", ws="tungstenite")

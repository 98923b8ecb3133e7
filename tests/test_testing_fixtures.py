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

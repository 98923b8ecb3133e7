"""pytest plugin for fanwire (``pytest11`` entry point ``fanwire``).

Fixtures:

- ``free_port`` -> ``int``: a free TCP port on 127.0.0.1.
- ``fanwire_server`` -> factory ``(env=None, args=(), app=None, *, factory=False,
  app_dir=None, port=None, name=None, start_timeout=30.0, stop_timeout=10.0,
  health_path="/health", tls=False, serving=None) -> FanwireServer``: starts
  ``python -m fanwire`` (or the ASGI app ``app="module:attr"`` under uvicorn) on a free
  port and waits for ``/health``. ``tls=True`` serves HTTPS/WSS with a self-signed
  certificate that the clients of :mod:`fanwire.testing.clients` trust (``.verify``
  for httpx); ``serving=Serving(...)`` (a row of
  :data:`fanwire.testing.matrix.SERVINGS`) runs the app under that row's server,
  implementations, native settings and TLS. The handle has ``.url``, ``.ws_url``,
  ``.verify``, ``.port``, ``.pid``, ``.stop()``, ``.restart()``, ``.kill()``,
  ``.log_text()``, ``.ws_client()``, ``.sse_client()``.
- ``fanwire_module_server``: the same factory, module-scoped: for a server shared by the
  tests of one module (stopped after the module's last test; its log is added to the
  report of any of them that fails).
- ``redis_server`` -> a started :class:`RedisServer` (``.url``, ``.port``, ``.stop()``,
  ``.restart()``); ``redis_server_factory`` -> ``(args=(), port=None) -> RedisServer``.
- ``fanwire_broker`` -> ``fanwire.Broker()`` (in-process), closed at teardown.
- ``chromium_browser`` -> a headless playwright ``Browser`` (sync API) on Debian's
  Chromium.

Marker ``fanwire_exception(reason)``: a documented exception of the server matrix (see
:func:`fanwire.testing.matrix.serving_params`); the reasons are listed after the run.

Everything a fixture starts is stopped when its test ends; the log of every server a
failed test started is added to its report. At session end, every process started
through :mod:`fanwire.testing` must be gone and its port free, or the session fails.

This module imports only the standard library and pytest at import time (never the
compiled core, nor httpx/websockets), so loading the plugin cannot break a pytest run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .ports import free_port as _pick_free_port
from .processes import ManagedProcess, started_processes

if TYPE_CHECKING:
    from .matrix import Serving
    from .servers import FanwireServer, RedisServer

_STARTED_BY_TEST = pytest.StashKey[list[ManagedProcess]]()
_LOG_CHARS = 20000


def _remember(request: pytest.FixtureRequest, process: ManagedProcess) -> None:
    """Note ``process`` on the fixture's node (a test, or a module for module scope)."""
    request.node.stash.setdefault(_STARTED_BY_TEST, []).append(process)


@pytest.fixture(scope="session")
def fanwire_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory for the logs of the servers the fixtures start."""
    return tmp_path_factory.mktemp("fanwire-logs")


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on."""
    return _pick_free_port()


def _server_factory(
    request: pytest.FixtureRequest, log_dir: Path
) -> Iterator[Callable[..., FanwireServer]]:
    """The factory behind ``fanwire_server`` and ``fanwire_module_server``."""
    from .servers import FanwireServer

    started: list[FanwireServer] = []

    def start(
        env: dict[str, str | None] | None = None,
        args: Sequence[str] = (),
        app: str | None = None,
        *,
        factory: bool = False,
        app_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        name: str | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        health_path: str = "/health",
        tls: bool = False,
        serving: Serving | None = None,
    ) -> FanwireServer:
        server = FanwireServer(
            app=app,
            factory=factory,
            app_dir=app_dir,
            health_path=health_path,
            name=name,
            port=port,
            env=env,
            args=args,
            log_dir=log_dir,
            start_timeout=start_timeout,
            stop_timeout=stop_timeout,
            tls=tls,
            serving=serving,
        )
        started.append(server)
        _remember(request, server)
        return server.start()

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def fanwire_server(
    request: pytest.FixtureRequest, fanwire_log_dir: Path
) -> Iterator[Callable[..., FanwireServer]]:
    """Factory: start fanwire (or an ASGI app) on a free port; stopped at test end."""
    yield from _server_factory(request, fanwire_log_dir)


@pytest.fixture(scope="module")
def fanwire_module_server(
    request: pytest.FixtureRequest, fanwire_log_dir: Path
) -> Iterator[Callable[..., FanwireServer]]:
    """Factory like ``fanwire_server``, for servers shared by a module's tests."""
    yield from _server_factory(request, fanwire_log_dir)


@pytest.fixture
def redis_server_factory(
    request: pytest.FixtureRequest, fanwire_log_dir: Path
) -> Iterator[Callable[..., RedisServer]]:
    """Factory: start ``redis-server`` on a free port; stopped at test end."""
    from .servers import RedisServer

    started: list[RedisServer] = []

    def start(args: Sequence[str] = (), port: int | None = None) -> RedisServer:
        server = RedisServer(args=args, port=port, log_dir=fanwire_log_dir)
        started.append(server)
        _remember(request, server)
        return server.start()

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def redis_server(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    """A running ``redis-server`` (``.url``); ``.stop()``/``.restart()`` keep its port."""
    return redis_server_factory()


@pytest.fixture
def fanwire_broker() -> Iterator[Any]:
    """An in-process ``fanwire.Broker()``, closed at teardown (core imported only here)."""
    import fanwire

    broker = fanwire.Broker()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def chromium_browser() -> Iterator[Any]:
    """A headless playwright ``Browser`` (sync API) running Debian's Chromium."""
    from playwright.sync_api import sync_playwright

    from .browser import launch_chromium

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Add the logs of the servers a failed test started to its report."""
    report = yield
    if report.failed:
        # The test's own servers, and those of its module (``fanwire_module_server``),
        # but not those stopped before it began (a module's earlier matrix rows).
        started = [p for node in item.listchain() for p in node.stash.get(_STARTED_BY_TEST, [])]
        for process in started:
            if process.stopped_at is not None and process.stopped_at < call.start:
                continue
            title = f"{process.kind} {process.name!r} log ({process.log_path})"
            report.sections.append((title, process.log_text(_LOG_CHARS)))
    return report


_EXCEPTIONS = pytest.StashKey[dict[str, list[str]]]()


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``fanwire_exception`` marker."""
    config.addinivalue_line(
        "markers",
        "fanwire_exception(reason): a documented exception of the server matrix "
        "(fanwire.testing.matrix): on this row the test asserts the documented behaviour "
        "instead; the reasons are listed after the run",
    )
    config.stash[_EXCEPTIONS] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Note the selected tests that run under a documented matrix exception."""
    found = session.config.stash.get(_EXCEPTIONS, {})
    for item in session.items:
        for mark in item.iter_markers("fanwire_exception"):
            reason = str(mark.args[0] if mark.args else mark.kwargs.get("reason"))
            found.setdefault(reason, []).append(item.nodeid)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """List the documented matrix exceptions of the collected tests (never silent)."""
    found = config.stash.get(_EXCEPTIONS, {})
    if not found:
        return
    terminalreporter.write_sep("-", "fanwire matrix: documented exceptions (docs/testing.md)")
    for reason, nodeids in found.items():
        terminalreporter.write_line(f"{reason} [{len(nodeids)} test(s) on such rows]")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session if a process started through fanwire.testing outlived it."""
    problems: list[str] = []
    for process in started_processes():
        found = process.check_gone()
        if found:
            problems += found
            process.force_cleanup()
    if not problems:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("!", "fanwire.testing: processes or ports left behind", red=True)
        for problem in problems:
            reporter.write_line(f"  {problem}", red=True)
        reporter.write_line("  (the leftovers were killed; the session is marked failed)")
    else:  # pragma: no cover - no terminal (e.g. -p no:terminal)
        print("fanwire.testing: left behind:", *problems, sep="\n  ")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED

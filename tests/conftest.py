"""Test configuration.

The fanwire pytest plugin (fixtures ``fanwire_server``, ``redis_server``, ``free_port``,
``fanwire_broker``, ...) is loaded by its ``pytest11`` entry point once the package is
installed (``pip install ".[test]"``). When it is not (running from a source tree with
``PYTHONPATH=python``) or plugin autoloading is off, it is loaded here instead; loading
it both ways would register it twice, which pytest refuses.

A module that defines a ``server`` fixture (a running fanwire server) also gets ``http``,
a synchronous client of it, and ``topic``, a new topic created on it for each test.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

import httpx
import pytest

PLUGIN = "fanwire.testing.plugin"


def plugin_autoloaded() -> bool:
    """True when pytest loads the plugin by itself, through the installed entry point."""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.value == PLUGIN for ep in entry_points(group="pytest11"))


pytest_plugins = ["pytester"] if plugin_autoloaded() else ["pytester", PLUGIN]


_names = itertools.count(1)


@pytest.fixture(scope="module")
def http(server: Any) -> Iterator[httpx.Client]:
    """A synchronous HTTP client of the module's ``server``."""
    with httpx.Client(base_url=server.url, timeout=10, trust_env=False) as client:
        yield client


@pytest.fixture
def topic(http: httpx.Client) -> str:
    """A topic created on the module's ``server`` for this test alone."""
    name = f"t{os.getpid()}-{next(_names)}"
    assert http.post("/topics", json={"name": name}).status_code == 201
    return name

"""Test configuration.

The fanwire pytest plugin (fixtures ``fanwire_server``, ``redis_server``, ``free_port``,
``fanwire_broker``, ...) is loaded by its ``pytest11`` entry point once the package is
installed (``pip install ".[test]"``). When it is not (running from a source tree with
``PYTHONPATH=python``) or plugin autoloading is off, it is loaded here instead; loading
it both ways would register it twice, which pytest refuses.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points

PLUGIN = "fanwire.testing.plugin"


def plugin_autoloaded() -> bool:
    """True when pytest loads the plugin by itself, through the installed entry point."""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.value == PLUGIN for ep in entry_points(group="pytest11"))


pytest_plugins = ["pytester"] if plugin_autoloaded() else ["pytester", PLUGIN]

"""Headless Chromium for browser tests: Debian's ``chromium`` driven by playwright.

No browser is downloaded: playwright launches the system binary through
``executable_path``. Playwright passes ``--no-sandbox`` by default
(``chromium_sandbox=False``), which running as root needs.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_executable() -> str:
    """Path of the Chromium binary (``$FANWIRE_TEST_CHROMIUM`` overrides the search)."""
    configured = os.environ.get("FANWIRE_TEST_CHROMIUM")
    if configured:
        return configured
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("no Chromium on PATH (Debian: apt-get install -y chromium)")


def launch_chromium(playwright: Any, **options: Any) -> Any:
    """Launch headless Chromium with a started playwright (sync or async API object).

    Returns the playwright ``Browser`` (an awaitable of it with the async API).
    """
    options.setdefault("headless", True)
    return playwright.chromium.launch(executable_path=chromium_executable(), **options)

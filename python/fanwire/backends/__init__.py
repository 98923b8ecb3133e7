"""Shared-log backends for scaling fanwire out over several workers or hosts.

:mod:`fanwire.backends.redis` keeps every topic in a Redis stream: a publish is an
``XADD`` and each process feeds its local C++ core from ``XREAD``, so the stream id is the
message id on every node. Nothing here is imported unless a Redis URL is configured.
"""

from __future__ import annotations

from ..errors import FanwireError


class BackendUnavailable(FanwireError):
    """The shared log cannot be reached: HTTP 503, WebSocket error ``INTERNAL``.

    A publish that raises this was not accepted (it is never acknowledged, then lost).
    """

    code = "INTERNAL"
    status = 503


__all__ = ["BackendUnavailable"]

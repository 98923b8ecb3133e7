"""Helpers of the tests that run over the server matrix (fanwire.testing.matrix).

Each talks to a :class:`fanwire.testing.servers.FanwireServer` over HTTP(S), trusting
its certificate on the TLS rows (``verify=srv.verify``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
import pytest

from fanwire.testing.matrix import Serving, serving_params
from fanwire.testing.servers import FanwireServer


def create_topic(srv: FanwireServer, name: str) -> str:
    """``POST /topics`` (201 expected); the name."""
    response = httpx.post(
        srv.url + "/topics", json={"name": name}, verify=srv.verify, trust_env=False
    )
    assert response.status_code == 201, response.text
    return name


def publish(srv: FanwireServer, topic: str, data: Any, event: str | None = None) -> str:
    """``POST /topics/{topic}/messages`` (202 expected); the message id."""
    body = {"data": data} if event is None else {"data": data, "event": event}
    response = httpx.post(
        f"{srv.url}/topics/{topic}/messages", json=body, verify=srv.verify, trust_env=False
    )
    assert response.status_code == 202, response.text
    return str(response.json()["message_id"])


def delete_topic(srv: FanwireServer, topic: str) -> int:
    """``DELETE /topics/{topic}``; the status code."""
    return httpx.delete(f"{srv.url}/topics/{topic}", verify=srv.verify, trust_env=False).status_code


def serving_fixture(rows: Iterable[Serving]) -> Any:
    """A module-scoped fixture giving one row of ``rows`` at a time (``serving =
    serving_fixture(ROWS)`` in a module): the module's servers run that way."""

    @pytest.fixture(scope="module", params=serving_params(rows))
    def serving(request: pytest.FixtureRequest) -> Serving:
        return request.param  # type: ignore[no-any-return]

    return serving

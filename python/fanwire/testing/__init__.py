"""fanwire.testing: pytest fixtures, real servers, protocol clients and assertions.

The pytest plugin (:mod:`fanwire.testing.plugin`) is registered through the ``pytest11``
entry point ``fanwire``. Modules:

- :mod:`~fanwire.testing.servers`: :class:`FanwireServer` (``python -m fanwire`` or any
  ASGI app under uvicorn, hypercorn or granian) and :class:`RedisServer`, as
  subprocesses on free ports.
- :mod:`~fanwire.testing.matrix`: :class:`Serving`, one way to serve fanwire (server,
  HTTP/WebSocket implementations, native paths, TLS), and :data:`SERVINGS`, the matrix
  the protocol suite runs on.
- :mod:`~fanwire.testing.tls`: a self-signed test certificate and contexts trusting it.
- :mod:`~fanwire.testing.clients`: :class:`SSEClient` and :class:`WSClient`, the one SSE
  and the one WebSocket client (the load and stress helpers run on them too).
- :mod:`~fanwire.testing.assertions`: :func:`assert_in_order`.
- :mod:`~fanwire.testing.load`: :func:`run_load` (and :func:`run_native`, the C++ load
  generator of ``bench/loadgen``).
- :mod:`~fanwire.testing.stress`: :func:`stress`: hundreds of SSE and WebSocket clients,
  stalled ones, in-order publishing, and a :class:`StressReport` to assert on.
- :mod:`~fanwire.testing.aio`: :func:`run` a coroutine from a plain test.
- :mod:`~fanwire.testing.browser`: headless Chromium (Debian's) for playwright.

Nothing is imported here, so importing the plugin stays cheap and never needs the
compiled core or the test-only dependencies.
"""

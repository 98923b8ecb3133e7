"""The HTTP surfaces over a :class:`~fanwire.Broker`: the app (``app.py``), ``/stream``
(``sse.py``), ``/ws`` (``ws.py``), REST (``rest.py``), ``/metrics``, auth, limits, the
demo feed and its dashboard, and several-worker serving (``workers.py``).

``_uvicorn.py`` is the only module that knows uvicorn's transport and protocol objects
(the native SSE path, ready-made WebSocket frames, resetting stalled sockets).
"""

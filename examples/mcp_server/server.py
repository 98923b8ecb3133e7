"""An MCP server on the MCP SDK's streamable HTTP transport whose event store is fanwire's,
so a client that loses its stream reconnects with ``Last-Event-ID`` and gets every event
it missed, from any worker when the broker shares Redis.

    pip install 'fanwire[mcp]'
    uvicorn server:app --app-dir examples/mcp_server --port 8000
    FANWIRE_REDIS_URL=redis://localhost:6379 uvicorn server:app --app-dir examples/mcp_server

The tool ``countdown`` reports progress ``n`` times; with ``drop_at`` the server closes
the SSE stream after that many steps (``ctx.close_sse_stream()``), and the SDK's client
reconnects and resumes from the event store.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from mcp.server.mcpserver import Context, MCPServer

import fanwire
import fanwire.mcp

settings = fanwire.Settings(demo_rate=0)
broker = fanwire.Broker(retention=10_000, redis_url=os.environ.get("FANWIRE_REDIS_URL"))
server = MCPServer("fanwire-countdown")


@server.tool()
async def countdown(n: int, ctx: Context, drop_at: int = -1, delay: float = 0.01) -> str:
    """Report progress ``n`` times, then answer; the stream is dropped at ``drop_at``, and
    the steps after it are reported while the client is away (they reach it from the
    event store when it reconnects)."""
    for step in range(1, n + 1):
        await ctx.report_progress(step, n, f"step {step}")
        if step == drop_at:
            await ctx.close_sse_stream()  # the client reconnects with Last-Event-ID
        await asyncio.sleep(delay if step < drop_at or drop_at < 0 else 0)
    return f"counted {n}"


# How long a client waits before it reconnects (ms). The SDK forwards live only what is
# stored once a resumed stream is registered again, after the replay: an event stored in
# between is not sent on that connection (it stays in the store), the SDK's own
# "replay->live-tail window". The tool reports the steps after its drop at once, so they
# are all stored before the client is back.
RETRY_MS = int(os.environ.get("MCP_RETRY_MS", "1000"))
mcp_app = server.streamable_http_app(
    event_store=fanwire.mcp.EventStore(broker), retry_interval=RETRY_MS
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with fanwire.lifespan(broker, settings), server.session_manager.run():
        yield


app = FastAPI(lifespan=lifespan)
app.include_router(fanwire.router(broker, settings))  # /health, /stream, /topics, ...
app.mount("/", mcp_app)  # POST/GET/DELETE /mcp

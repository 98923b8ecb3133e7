"""Per-request streams (one streamed AI answer each): the cost per token.

``broker.end`` / ``broker.aend`` and ``fanwire.sse`` are not on main yet, so a stream
ends the way it can today: the producer publishes its tokens, then deletes the topic,
and the subscriber's stream ends (``no_topics``) after the last token.

- **In process**: ``mode.request_streams`` streams one after another, each
  ``create_topic``, one ``broker.subscribe`` (``mode="sse"``), a task that ``await
  broker.apublish``-es ``mode.request_tokens`` tokens (``{"token": " the"}``) and then
  ``adelete_topic``, the subscriber reading until its stream ends: wall ns per token.
- **Over HTTP**: ``bench/baselines/per_request_app.py`` (fanwire embedded in a FastAPI
  app on uvicorn), ``mode.request_concurrency`` clients at a time, each stream
  ``POST /answer {"topic", "tokens"}`` then ``GET /stream?topic=...`` (native SSE) read
  to its end: tokens/s and server CPU µs per token (request overhead included).
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass

import orjson

from bench.context import Context
from bench.servers import HOST, ServerProcess, ServerSpec

TOKEN = {"token": " the"}
APP = ServerSpec(
    "per_request_app",
    "fanwire embedded, POST /answer",
    (sys.executable, "-m", "bench.baselines.per_request_app", "--host", HOST, "--port", "{port}"),
    ("sse",),
    role="subject",
)


@dataclass
class PerRequestResult:
    where: str  # "in_process" or "http"
    streams: int
    tokens_per_stream: int
    concurrency: int = 1
    tokens_received: int = 0
    complete: bool = False  # every stream got every token, then ended
    wall_s: float | None = None
    ns_per_token: float | None = None
    tokens_per_s: float | None = None
    server_cpu_us_per_token: float | None = None  # HTTP: the server process's CPU
    error: str | None = None

    @property
    def key(self) -> str:
        return f"fanwire/{self.where}"


def run_per_request(ctx: Context) -> list[PerRequestResult]:
    mode = ctx.mode
    local = PerRequestResult("in_process", mode.request_streams, mode.request_tokens)
    http = PerRequestResult(
        "http", mode.request_streams, mode.request_tokens, mode.request_concurrency
    )
    ctx.progress.say(
        f"fanwire: per-request streams, {local.streams} x {local.tokens_per_stream} tokens"
    )
    for res, run in ((local, _in_process), (http, _over_http)):
        try:
            run(ctx, res)
            assert res.wall_s is not None
            total = res.streams * res.tokens_per_stream
            res.complete = res.tokens_received == total
            res.tokens_per_s = res.tokens_received / res.wall_s
            res.ns_per_token = res.wall_s / max(res.tokens_received, 1) * 1e9
            cpu = res.server_cpu_us_per_token
            ctx.progress.say(
                f"  {res.where}: {res.tokens_per_s:,.0f} tokens/s, {res.ns_per_token:,.0f} ns "
                f"per token"
                + ("" if cpu is None else f", server CPU {cpu:.1f} µs per token")
                + ("" if res.complete else f" (only {res.tokens_received:,} of {total:,})")
            )
        except (RuntimeError, OSError, TimeoutError) as exc:
            res.error = str(exc)
            ctx.progress.say(f"  {res.where}: error: {exc}")
    return [local, http]


def _in_process(ctx: Context, res: PerRequestResult) -> None:
    import fanwire

    async def main() -> None:
        broker = fanwire.Broker()
        try:
            started = time.perf_counter()
            for n in range(res.streams):
                got = await _one_local(broker, f"req-{n}", res.tokens_per_stream)
                res.tokens_received += got
            res.wall_s = time.perf_counter() - started
        finally:
            broker.close()

    asyncio.run(main())


async def _one_local(broker: object, topic: str, tokens: int) -> int:
    import fanwire

    assert isinstance(broker, fanwire.Broker)
    broker.create_topic(topic)
    async with broker.subscribe(topic, mode="sse") as sub:

        async def produce() -> None:
            for _ in range(tokens):
                await broker.apublish(topic, TOKEN)
            await broker.adelete_topic(topic)

        task = asyncio.create_task(produce())
        async for _batch in sub:
            pass
        await task
        return sub.received


def _over_http(ctx: Context, res: PerRequestResult) -> None:
    with ServerProcess(APP, ctx.server_log(APP.name)) as server:
        cpu0 = server.cpu_seconds()
        started = time.perf_counter()
        asyncio.run(_clients(server.port, res))
        res.wall_s = time.perf_counter() - started
        cpu = server.cpu_seconds() - cpu0
    res.server_cpu_us_per_token = cpu / max(res.tokens_received, 1) * 1e6


async def _clients(port: int, res: PerRequestResult) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(res.streams):
        queue.put_nowait(n)

    async def worker() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            got = await _one_http(port, f"req-{n}", res.tokens_per_stream)
            res.tokens_received += got  # after the await: the workers share the count

    await asyncio.wait_for(
        asyncio.gather(*(worker() for _ in range(res.concurrency))),
        timeout=60 + res.streams * res.tokens_per_stream / 1000,
    )


async def _one_http(port: int, topic: str, tokens: int) -> int:
    """POST /answer, then read GET /stream to its end; the tokens seen."""
    body = orjson.dumps({"topic": topic, "tokens": tokens})
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(
            b"POST /answer HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 202"):
            raise RuntimeError(f"POST /answer answered {head[:40]!r}")
        length = next(
            int(line.split(b":")[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length")
        )
        await reader.readexactly(length)
        writer.write(
            b"GET /stream?topic=%s HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n"
            b"Connection: close\r\n\r\n" % topic.encode()
        )
        seen, buf = 0, b""
        while chunk := await reader.read(1 << 16):
            buf += chunk
            cut = buf.rfind(b"\n") + 1  # whole lines only: a token may be cut in two
            seen += buf.count(b'"token"', 0, cut)
            if b"topic_deleted" in buf[:cut]:  # the end of this stream
                break
            buf = buf[cut:]
        return seen
    finally:
        writer.close()

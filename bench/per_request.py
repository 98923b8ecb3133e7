"""Per-request streams (one streamed AI answer each): the cost per token.

A stream is one topic: the producer publishes its tokens (``{"token": " the", "i": k}``)
and then ends it with ``broker.aend``; the reader reads until the ``end`` notice, and
every token must arrive exactly once (``i`` counted after the timed part).

- **In process**: ``mode.request_streams`` streams one after another, each
  ``create_topic``, one ``broker.subscribe`` (``mode="sse"``), a task that ``await
  broker.apublish``-es ``mode.request_tokens`` tokens and then ``aend``-s the topic, the
  subscriber reading until its iteration ends after ``end``: wall ns per token.
- **Over HTTP**: ``bench/baselines/per_request_app.py`` (fanwire embedded in a FastAPI
  app on uvicorn), ``mode.request_concurrency`` clients at a time, each stream
  ``POST /answer {"topic", "tokens"}`` then a GET read to its end (``event: end``, then
  the server closes the stream), in two variants: fanwire's native ``GET /stream?topic=``
  and the app's ``fastapi.sse`` route ``GET /answers/{topic}`` over
  ``fanwire.sse.events``. Each: tokens/s and server CPU µs per token (requests included).
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass

import orjson

from bench.context import Context
from bench.servers import HOST, ServerProcess, ServerSpec

APP = ServerSpec(
    "per_request_app",
    "fanwire embedded, POST /answer",
    (sys.executable, "-m", "bench.baselines.per_request_app", "--host", HOST, "--port", "{port}"),
    ("sse",),
    role="subject",
)
# a failed stream: an error HTTP answer, a refused connection, a cut chunked body
ERRORS = (RuntimeError, OSError, TimeoutError, EOFError, ValueError)
# where -> the GET that reads one stream (the topic formatted in)
ROUTES = {"stream": "/stream?topic={topic}", "fastapi_sse": "/answers/{topic}"}


@dataclass
class PerRequestResult:
    where: str  # "in_process", "stream" (native GET /stream) or "fastapi_sse"
    streams: int
    tokens_per_stream: int
    concurrency: int = 1
    tokens_received: int = 0  # distinct tokens, over all streams
    duplicates: int = 0  # tokens received more than once
    streams_ended: int = 0  # streams that ended on `end`
    complete: bool = False  # every stream got every token exactly once, then `end`
    wall_s: float | None = None
    ns_per_token: float | None = None
    tokens_per_s: float | None = None
    server_cpu_us_per_token: float | None = None  # HTTP: the server process's CPU
    error: str | None = None

    @property
    def key(self) -> str:
        return f"fanwire/{self.where}"

    def tally(self, sse: bytes) -> None:
        """Count one stream's SSE bytes: its tokens by index, and its `end`."""
        seen = [0] * self.tokens_per_stream
        ended = False
        for frame in sse.split(b"\n\n"):
            fields = dict(line.partition(b": ")[::2] for line in frame.split(b"\n") if line)
            event = fields.get(b"event")
            if event == b"end":
                ended = True
            elif event == b"message":
                seen[orjson.loads(fields[b"data"])["data"]["i"]] += 1
        self.tokens_received += sum(1 for n in seen if n)
        self.duplicates += sum(n - 1 for n in seen if n > 1)
        self.streams_ended += ended


def run_per_request(ctx: Context) -> list[PerRequestResult]:
    mode = ctx.mode
    local = PerRequestResult("in_process", mode.request_streams, mode.request_tokens)
    https = [
        PerRequestResult(where, mode.request_streams, mode.request_tokens, mode.request_concurrency)
        for where in ROUTES
    ]
    ctx.progress.say(
        f"fanwire: per-request streams, {local.streams} x {local.tokens_per_stream} tokens"
    )
    try:
        _in_process(local)
    except ERRORS as exc:
        local.error = str(exc)
    try:
        with ServerProcess(APP, ctx.server_log(APP.name)) as server:
            for res in https:
                try:
                    _over_http(server, res)
                except ERRORS as exc:
                    res.error = str(exc)
    except ERRORS as exc:
        for res in https:
            res.error = res.error or str(exc)
    for res in (local, *https):
        _finish(ctx, res)
    return [local, *https]


def _finish(ctx: Context, res: PerRequestResult) -> None:
    if res.error is not None or res.wall_s is None:
        ctx.progress.say(f"  {res.where}: error: {res.error}")
        return
    total = res.streams * res.tokens_per_stream
    res.complete = (
        res.tokens_received == total and res.duplicates == 0 and res.streams_ended == res.streams
    )
    res.tokens_per_s = res.tokens_received / res.wall_s
    res.ns_per_token = res.wall_s / max(res.tokens_received, 1) * 1e9
    cpu = res.server_cpu_us_per_token
    ctx.progress.say(
        f"  {res.where}: {res.tokens_per_s:,.0f} tokens/s, {res.ns_per_token:,.0f} ns per token"
        + ("" if cpu is None else f", server CPU {cpu:.1f} µs per token")
        + (
            ""
            if res.complete
            else f" (incomplete: {res.tokens_received:,} of {total:,} tokens, "
            f"{res.duplicates} duplicates, {res.streams_ended} of {res.streams} ended)"
        )
    )


def _in_process(res: PerRequestResult) -> None:
    import fanwire

    async def main() -> None:
        broker = fanwire.Broker()
        try:
            started = time.perf_counter()
            streams = [
                await _one_local(broker, f"req-{n}", res.tokens_per_stream)
                for n in range(res.streams)
            ]
            res.wall_s = time.perf_counter() - started
        finally:
            broker.close()
        for sse in streams:  # checked after the timed part
            res.tally(sse)

    asyncio.run(main())


async def _one_local(broker: object, topic: str, tokens: int) -> bytes:
    """One stream: its SSE bytes, read until the subscription ends after `end`."""
    import fanwire

    assert isinstance(broker, fanwire.Broker)
    broker.create_topic(topic)
    batches: list[bytes] = []
    async with broker.subscribe(topic, mode="sse") as sub:

        async def produce() -> None:
            for i in range(tokens):
                await broker.apublish(topic, {"token": " the", "i": i})
            await broker.aend(topic)

        task = asyncio.create_task(produce())
        async for batch in sub:
            batches.append(batch)
        await task
    await broker.adelete_topic(topic)  # as a server's idle_ttl would: the broker stays small
    return b"".join(batches)


def _over_http(server: ServerProcess, res: PerRequestResult) -> None:
    cpu0 = server.cpu_seconds()
    started = time.perf_counter()
    bodies = asyncio.run(_clients(server.port, res))
    res.wall_s = time.perf_counter() - started
    cpu = server.cpu_seconds() - cpu0
    for body in bodies:  # checked after the timed part
        res.tally(body)
    res.server_cpu_us_per_token = cpu / max(res.tokens_received, 1) * 1e6


async def _clients(port: int, res: PerRequestResult) -> list[bytes]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(res.streams):
        queue.put_nowait(n)
    bodies: list[bytes] = []

    async def worker() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            path = ROUTES[res.where].format(topic=f"{res.where}-{n}")
            bodies.append(await _one_http(port, f"{res.where}-{n}", path, res.tokens_per_stream))

    await asyncio.wait_for(
        asyncio.gather(*(worker() for _ in range(res.concurrency))),
        timeout=60 + res.streams * res.tokens_per_stream / 1000,
    )
    return bodies


async def _one_http(port: int, topic: str, path: str, tokens: int) -> bytes:
    """POST /answer, then GET ``path`` read until the server closes it; its body."""
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
        await reader.readexactly(_header_int(head, b"content-length"))
        writer.write(
            b"GET %s HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n"
            b"Connection: close\r\n\r\n" % path.encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"GET {path} answered {head[:40]!r}")
        raw = await reader.read()  # the stream closes after `end`
        return _dechunk(raw) if b"transfer-encoding: chunked" in head.lower() else raw
    finally:
        writer.close()


def _header_int(head: bytes, name: bytes) -> int:
    return next(
        int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(name)
    )


def _dechunk(raw: bytes) -> bytes:
    out, at = [], 0
    while True:
        eol = raw.index(b"\r\n", at)
        size = int(raw[at:eol].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(raw[eol + 2 : eol + 2 + size])
        at = eol + 2 + size + 2

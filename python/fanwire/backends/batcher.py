"""Auto-pipelining of publishes: the ``XADD`` scripts of concurrent publishers go to Redis
in one pipeline (one write, one round trip) instead of one round trip each.

At most one pipeline is in flight; publishes arriving meanwhile wait for it and form the
next one, so batches grow with load and an idle publisher pays a single round trip. Each
publish still gets its own result (its id) or its own error, in submission order.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from .failures import unavailable

#: Most publishes sent in one pipeline.
MAX_BATCH = 256


class PublishBatcher:
    """Runs one Lua script (by sha) for many callers, pipelined."""

    def __init__(self, client: aioredis.Redis, lua: str) -> None:
        self.client = client
        self.lua = lua
        self.sha: str | None = None
        self._queue: list[tuple[list[Any], list[Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def run(self, keys: list[Any], args: list[Any]) -> Any:
        """The script's result for ``keys``/``args`` (raises BackendUnavailable if down)."""
        return await self.submit(keys, args)

    def submit(self, keys: list[Any], args: list[Any]) -> asyncio.Future[Any]:
        """Queue a run for the next pipeline and return at once: the future of its result.
        Runs go to Redis in submission order (one pipeline in flight), so a caller that
        submits several before awaiting any still has them applied in its order."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((keys, args, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_all())
        return future

    async def _flush_all(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                with unavailable("publish"):
                    results = await self._execute(batch)
            except Exception as exc:  # every caller of the batch gets the error
                results = [exc] * len(batch)
            for (_, _, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _execute(self, batch: list[tuple[list[Any], list[Any], Any]]) -> list[Any]:
        if self.sha is None:
            self.sha = await self.client.script_load(self.lua)
        results = await self._pipeline(batch)
        if any(isinstance(r, NoScriptError) for r in results):  # Redis restarted
            self.sha = await self.client.script_load(self.lua)
            results = await self._pipeline(batch)
        return results

    async def _pipeline(self, batch: list[tuple[list[Any], list[Any], Any]]) -> list[Any]:
        async with self.client.pipeline(transaction=False) as pipe:
            assert self.sha is not None  # _execute loaded the script
            for keys, args, _ in batch:
                pipe.evalsha(self.sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

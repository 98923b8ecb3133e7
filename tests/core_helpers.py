"""Helpers for the core tests: decode what a Subscription yields."""

from __future__ import annotations

from typing import Any

import orjson


def sse_frames(blob: bytes) -> list[dict[str, Any]]:
    """Split an SSE batch into frames {id?, event, data} (data parsed as JSON)."""
    frames = []
    for raw in blob.split(b"\n\n"):
        if not raw:
            continue
        frame: dict[str, Any] = {}
        for line in raw.split(b"\n"):
            key, _, value = line.partition(b": ")
            frame[key.decode()] = orjson.loads(value) if key == b"data" else value.decode()
        frames.append(frame)
    return frames


def ws_messages(batch: list[str]) -> list[dict[str, Any]]:
    return [orjson.loads(text) for text in batch]


async def drain_sse(sub: Any, timeout: float = 0.2) -> list[dict[str, Any]]:
    """Every frame that arrives until ``timeout`` passes with nothing new."""
    frames: list[dict[str, Any]] = []
    while True:
        try:
            batch = await sub.next_batch(timeout=timeout)
        except StopAsyncIteration:
            return frames
        if batch is None:
            return frames
        frames.extend(sse_frames(batch))


async def drain_ws(sub: Any, timeout: float = 0.2) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        try:
            batch = await sub.next_batch(timeout=timeout)
        except StopAsyncIteration:
            return messages
        if batch is None:
            return messages
        messages.extend(ws_messages(batch))

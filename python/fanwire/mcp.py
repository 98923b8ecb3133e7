"""An event store for the MCP SDK's streamable HTTP transport, on fanwire topics.

``fanwire.mcp.EventStore(broker)`` implements ``mcp.server.streamable_http.EventStore``
(install the extra: ``pip install 'fanwire[mcp]'``)::

    broker = fanwire.Broker(redis_url=...)   # or in memory, for one process
    app = mcp_server.streamable_http_app(event_store=fanwire.mcp.EventStore(broker))

Each MCP stream is a fanwire topic (``<prefix>.<key>``) and each stored event one message
of it, so the events are kept (the broker's ``retention`` per stream), and in Redis mode
every worker replays what any worker stored. An event id is ``<key>/<message id>``: it
carries the stream it belongs to, so a replay needs nothing but the id. The SDK's stream
ids are request ids (``"_GET_stream"`` for the standalone stream), which every session
reuses; so the key is ``<stream id, base64url>.<generation>``, and a new generation (a
new topic) starts once a stream's response is stored: a request id used again later never
sees an earlier stream. (Two sessions running a request of the same id at the same time,
or the standalone streams of several sessions, share a topic, as in the SDK's store.)

A request's stream is complete once its response (or error) is stored: its topic is then
deleted ``keep`` seconds later (a client may still reconnect to get the response until
then), so topics do not pile up to ``max_topics``. Streams that never complete (the
standalone one) are kept.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets

import orjson

from .broker import Broker
from .enums import Mode, Policy
from .errors import FanwireError

try:
    from mcp.server.streamable_http import EventCallback, EventId, EventMessage, StreamId
    from mcp.server.streamable_http import EventStore as _SDKEventStore
    from mcp_types import JSONRPCError, JSONRPCMessage, JSONRPCResponse, jsonrpc_message_adapter
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError("fanwire.mcp needs the MCP SDK: pip install 'fanwire[mcp]'") from exc

__all__ = ["EventStore"]


class EventStore(_SDKEventStore):
    """MCP events kept in fanwire topics (see the module's docs)."""

    def __init__(self, broker: Broker, *, prefix: str = "mcp", keep: float = 300.0) -> None:
        self.broker = broker
        self.prefix = prefix
        self.keep = keep
        self._current: dict[StreamId, str] = {}  # stream id -> key of its generation
        self._expiring: set[asyncio.Task[None]] = set()

    def _topic(self, key: str) -> str:
        return f"{self.prefix}.{key}"

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        key = self._current.get(stream_id)
        if key is None:  # a new stream, or a request id used again after its response
            name = base64.urlsafe_b64encode(str(stream_id).encode()).decode().rstrip("=")
            key = f"{name}.{secrets.token_hex(4)}"
            await self.broker.acreate_topic(self._topic(key))  # on every node
            self._current[stream_id] = key
        topic = self._topic(key)
        data = (
            None
            if message is None
            else message.model_dump(mode="json", by_alias=True, exclude_unset=True)
        )
        published = await self.broker.apublish(topic, data)
        if isinstance(message, JSONRPCResponse | JSONRPCError):  # the request is answered
            if self._current.get(stream_id) == key:
                del self._current[stream_id]
            task = asyncio.create_task(self._expire(topic))
            self._expiring.add(task)
            task.add_done_callback(self._expiring.discard)
        return f"{key}/{published.message_id}"

    async def _expire(self, topic: str) -> None:
        await asyncio.sleep(self.keep)
        try:
            await self.broker.adelete_topic(topic)
        except FanwireError:  # shutting down, or Redis away: the topic stays
            pass

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        """Send every event of the stream stored after ``last_event_id``, once, in order;
        None when the id is not one of this store's."""
        key, _, since = last_event_id.partition("/")
        name = key.partition(".")[0]
        try:
            stream_id = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        topic = self._topic(key)
        try:
            await self.broker.aknow_topics([topic])  # stored by another worker
            sub = self.broker.subscribe(
                topic,
                since=since,
                mode=Mode.ws,
                policy=Policy.drop_oldest,
                queue_size=self.broker.retention,
            )
        except FanwireError:  # a bad name or no such stream here
            return None
        async with sub:
            await sub.replayed()  # Redis mode: the history read from the stream
            # Everything stored so far is ready at once; a timeout of 0 ends the replay.
            while (batch := await sub.next_batch(timeout=0)) is not None:
                for text in batch:
                    item = orjson.loads(text)
                    if item.get("type") != "event" or item["data"] is None:
                        continue  # a notice (gap: some events are gone), or a priming event
                    message = jsonrpc_message_adapter.validate_python(item["data"])
                    await send_callback(EventMessage(message, f"{key}/{item['message_id']}"))
        return stream_id

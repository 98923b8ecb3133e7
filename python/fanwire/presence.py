"""Occupancy and presence (PROTOCOL.md, "Presence and occupancy"): :class:`Presence`.

Occupancy is the number of subscriptions (connections) of a topic; presence is the set of
members, subscriptions that joined with ``presence``. Every subscription reports each of
its topics starting and ending here (``Hub.on_topic``), whatever ends it: unsubscribe, the
client gone, a slow-consumer close, the topic deleted, shutdown. So a member always leaves.

Hooks: ``on_occupied(pattern, fn)`` runs ``fn(topic)`` (sync or async) when a topic gets
its first subscriber, ``on_vacated`` when its last one leaves.

Multi-node (Redis): see :class:`ClusterPresence`. Each node writes its counts and members
to a presence log (a Redis stream) that every node reads in the same order, and keeps a
snapshot key with a TTL, refreshed by a heartbeat; a node whose key expired (``kill -9``)
is declared gone by the first node that notices, and its members leave everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import inspect
import logging
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from . import _core
from .enums import Mode
from .errors import InvalidMessage
from .names import glob_match

if TYPE_CHECKING:
    from .subscription import Subscription

log = logging.getLogger("fanwire.presence")

#: Largest encoded member ``info`` (PROTOCOL.md).
MAX_INFO = 1024
Hook = Callable[[str], Any]


def check_info(value: Any) -> dict[str, Any] | None:
    """A subscribe's ``presence`` field: ``True`` (no info), an object of at most
    ``MAX_INFO`` bytes encoded, or absent/``False`` (no presence). ``None`` means no
    presence, ``{}`` presence without info; anything else is :class:`InvalidMessage`."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if not isinstance(value, dict):
        raise InvalidMessage("presence must be true or an object of client info")
    try:
        size = len(orjson.dumps(value))
    except TypeError:
        raise InvalidMessage("presence info is not JSON") from None
    if size > MAX_INFO:
        raise InvalidMessage(f"presence info is {size} bytes encoded, limit {MAX_INFO}")
    return value


def member(client_id: str, user: str | None, info: dict[str, Any] | None) -> dict[str, Any]:
    """A presence member (PROTOCOL.md)."""
    return {
        "client_id": client_id,
        "user": user,
        "info": info or None,
        "joined_at": round(time.time(), 3),
    }


async def _settle(pending: list[Awaitable[Any]]) -> None:
    """Await the async hooks of one transition; a failure is logged, never raised."""
    for result in await asyncio.gather(*pending, return_exceptions=True):
        if isinstance(result, Exception):
            log.error("presence hook failed", exc_info=result)


@dataclass
class _Entry:
    """One local subscription of a topic."""

    sub: Subscription
    member: dict[str, Any] | None = None
    join_leave: bool = False


@dataclass
class _Hooks:
    occupied: list[tuple[str, Hook]] = field(default_factory=list)
    vacated: list[tuple[str, Hook]] = field(default_factory=list)


class Presence:
    """This node's subscriptions per topic, their members, and the hooks (one per broker).

    Runs on the broker's event loop, as the subscriptions do.
    """

    def __init__(self) -> None:
        self._local: dict[str, dict[int, _Entry]] = {}
        # The entries that asked for join/leave notices: a join costs a look at these
        # only, not at every subscriber of the topic.
        self._listeners: dict[str, dict[int, _Entry]] = {}
        self._hooks = _Hooks()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._chains: dict[str, asyncio.Future[Any]] = {}  # per topic: its hooks running
        self.cluster: ClusterPresence | None = None
        self.node_id = secrets.token_hex(6)
        self.slow_consumers = 0  # subscriptions closed as slow consumers (the console's)
        self._slow: weakref.WeakSet[Subscription] = weakref.WeakSet()
        # The core sends the join/leave notices (Core.notify); ``drain`` when it says so.
        self.core: _core.Core | None = None
        self.drain: Callable[[], None] = lambda: None

    # -- what subscriptions report -------------------------------------------------------
    def on_topic(self, sub: Subscription, topic: str, started: bool) -> None:
        """``sub`` started (or ended) its subscription of ``topic``."""
        waiter = id(sub)
        entries = self._local.setdefault(topic, {})
        if started:
            before = len(entries)
            entries[waiter] = _Entry(sub)
            self._counted(topic, before, len(entries))
            return
        entry = entries.pop(waiter, None)
        if not entries:
            del self._local[topic]
        if entry is None:
            return
        listeners = self._listeners.get(topic)
        if listeners is not None and listeners.pop(waiter, None) is not None and not listeners:
            del self._listeners[topic]
        if sub.ended_by == _core.StreamEnd.slow_consumer and sub not in self._slow:
            self._slow.add(sub)
            self.slow_consumers += 1
        if entry.member is not None:
            self._left(topic, entry.member)
        self._counted(topic, len(entries) + 1, len(entries))

    def join(
        self,
        sub: Subscription,
        topic: str,
        *,
        client_id: str,
        user: str | None,
        info: dict[str, Any] | None,
        join_leave: bool,
    ) -> None:
        """After ``sub.add(topic)``: join the presence set (``info`` not None) and/or
        receive join and leave notices (``join_leave``)."""
        entry = self._local.get(topic, {}).get(id(sub))
        if entry is None:
            return
        entry.join_leave = join_leave
        if join_leave:
            self._listeners.setdefault(topic, {})[id(sub)] = entry
            sub.set_join_leave(topic)
        if info is not None:
            entry.member = member(client_id, user, info)
            self._joined(topic, entry.member)

    def topic_gone(self, topic: str) -> None:
        """``topic`` was deleted (here, or on another node: Redis mode's reader calls it):
        its subscriptions all ended. A native SSE stream of several topics whose socket is
        full takes nothing, so it cannot tell Python when one of them goes."""
        for entry in list(self._local.get(topic, {}).values()):
            self.on_topic(entry.sub, topic, False)

    def sweep(self, exists: Callable[[str], bool]) -> None:
        """End the local subscriptions of every topic that no longer exists."""
        for topic in [t for t in self._local if not exists(t)]:
            self.topic_gone(topic)

    # -- queries ---------------------------------------------------------------------------
    def local_count(self, topic: str) -> int:
        return len(self._local.get(topic, ()))

    def local_members(self, topic: str) -> list[dict[str, Any]]:
        entries = self._local.get(topic, {}).values()
        return [e.member for e in entries if e.member is not None]

    def local_state(self) -> dict[str, Any]:
        """Counts and members of this node (the cluster snapshot)."""
        return {
            "counts": {t: len(e) for t, e in self._local.items() if e},
            "members": {t: m for t in self._local if (m := self.local_members(t))},
        }

    def occupancy(self, topic: str) -> int:
        """Subscriptions of ``topic`` on every node."""
        count = self.local_count(topic)
        if self.cluster is not None:
            count += self.cluster.remote_count(topic)
        return count

    def members(self, topic: str) -> list[dict[str, Any]]:
        """Members of ``topic`` on every node, oldest first."""
        found = self.local_members(topic)
        if self.cluster is not None:
            found += self.cluster.remote_members(topic)
        return sorted(found, key=lambda m: (m["joined_at"], m["client_id"]))

    def occupied_topics(self) -> Iterable[str]:
        return self._local.keys()

    # -- hooks -----------------------------------------------------------------------------
    def on_occupied(self, pattern: str, fn: Hook) -> None:
        self._hooks.occupied.append((pattern, fn))

    def on_vacated(self, pattern: str, fn: Hook) -> None:
        self._hooks.vacated.append((pattern, fn))

    def fire(self, occupied: bool, topic: str) -> None:
        """Run the hooks of one transition of ``topic`` (on this node).

        Hooks of one topic run in transition order: while an async hook of an earlier
        transition still runs, the later ones (sync too) wait for it, so an app never
        sees ``on_vacated`` before the ``on_occupied`` it ends has finished.
        """
        table = self._hooks.occupied if occupied else self._hooks.vacated
        hooks = [fn for pattern, fn in table if glob_match(pattern, topic)]
        if not hooks:
            return
        before = self._chains.get(topic)
        if before is None or before.done():
            pending = self._call(hooks, topic)
            if not pending:
                return
            chain: asyncio.Future[Any] = asyncio.ensure_future(_settle(pending))
        else:
            chain = asyncio.ensure_future(self._after(before, hooks, topic))
        self._chains[topic] = chain
        self._tasks.add(chain)
        chain.add_done_callback(functools.partial(self._chain_done, topic))

    def _call(self, hooks: list[Hook], topic: str) -> list[Awaitable[Any]]:
        """Call each hook; the awaitables of the async ones."""
        pending = []
        for fn in hooks:
            try:
                result = fn(topic)
            except Exception:
                log.exception("presence hook %r failed for topic %r", fn, topic)
                continue
            if inspect.isawaitable(result):
                pending.append(result)
        return pending

    async def _after(self, before: asyncio.Future[Any], hooks: list[Hook], topic: str) -> None:
        await asyncio.wait([before])
        await _settle(self._call(hooks, topic))

    def _chain_done(self, topic: str, chain: asyncio.Future[Any]) -> None:
        self._tasks.discard(chain)
        if self._chains.get(topic) is chain:
            del self._chains[topic]

    # -- internals -------------------------------------------------------------------------
    def _counted(self, topic: str, before: int, after: int) -> None:
        if self.cluster is not None:
            self.cluster.count_changed(topic, after)
            return  # the cluster decides transitions, in the presence log's order
        if before == 0 and after > 0:
            self.fire(True, topic)
        elif before > 0 and after == 0:
            self.fire(False, topic)

    def _joined(self, topic: str, who: dict[str, Any]) -> None:
        self.notify(topic, "join", who)
        if self.cluster is not None:
            self.cluster.joined(topic, who)

    def _left(self, topic: str, who: dict[str, Any]) -> None:
        self.notify(topic, "leave", who)
        if self.cluster is not None:
            self.cluster.left(topic, who)

    def notify(self, topic: str, kind: str, who: dict[str, Any]) -> None:
        """Send a join/leave notice to this node's subscriptions of ``topic`` that asked.

        One core call: the notice is encoded once and shared by every listener, queued in
        place after the topic's messages so far, and written at their next wake-up (a
        burst of joins costs each listener one write, not one per join). Nothing here
        takes from a subscription, so a leave can never cascade into more leaves.
        """
        if topic not in self._listeners or self.core is None:
            return
        try:
            sent = self.core.notify(topic, kind == "join", orjson.dumps(who), on_loop=True)
        except KeyError:  # the topic is gone: so are its listeners
            return
        if sent.must_drain:
            self.drain()


def queue_rows(subs: Iterable[Subscription]) -> list[dict[str, Any]]:
    """Each subscription's queue of each topic: who, how many waiting, how full."""
    rows = []
    for sub in subs:
        transport = "sse" if sub.mode is Mode.sse else "ws"
        for topic, pending, size in sub.queues():
            rows.append(
                {
                    "client_id": sub.client_id,
                    "transport": transport,
                    "topic": topic,
                    "pending": pending,
                    "queue_size": size,
                    "fill": round(pending / max(size, 1), 4),
                }
            )
    return rows


def worst(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The ``n`` queues that lag most (fullest first, then most messages waiting)."""
    return heapq.nlargest(n, rows, key=lambda r: (r["fill"], r["pending"]))


@dataclass
class _Node:
    counts: dict[str, int] = field(default_factory=dict)
    members: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


class ClusterPresence:
    """Presence across the nodes sharing one Redis.

    - ``<prefix>:presence:log``: a stream of entries ``{"n": node, "op": ...}``: ``count``
      (a node's subscription count of topic ``t`` is now ``c``), ``join``/``leave``
      (member ``m`` of topic ``t``), ``gone`` (node ``x`` left), ``sync`` (a node's whole
      state ``s``). Values are absolute, so applying one twice changes nothing.
    - ``<prefix>:presence:node:<id>``: a node's snapshot, expiring ``ttl`` seconds after the
      last heartbeat (every ``ttl / 3``); ``<prefix>:presence:nodes``: the node ids.

    Every node applies the log in the same order, so all agree on each topic's total and on
    which entry made it occupied or vacant; only the node that wrote that entry runs the
    hooks (and owns the topic: it also runs ``on_vacated``). When the owner of a topic still
    occupied leaves, the smallest node id with subscribers takes over (``on_occupied``).
    """

    def __init__(self, presence: Presence, url: str, prefix: str, ttl: float) -> None:
        self.presence = presence
        self.url = url
        self.ttl = ttl
        self.node = presence.node_id
        self.log_key = f"{prefix}:presence:log"
        self.nodes_key = f"{prefix}:presence:nodes"
        self.node_prefix = f"{prefix}:presence:node:"
        self.nodes: dict[str, _Node] = {}
        self.owners: dict[str, str] = {}
        self._outbox: list[dict[str, Any]] = []
        self._dirty: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._last_id = "0-0"
        self._client: Any = None
        self._reader: Any = None
        self.exists: Callable[[str], bool] = lambda topic: True

    # -- from the local Presence -----------------------------------------------------------
    def count_changed(self, topic: str, count: int) -> None:
        self._dirty[topic] = count
        self._wake.set()

    def joined(self, topic: str, who: dict[str, Any]) -> None:
        self._send({"op": "join", "t": topic, "m": who})

    def left(self, topic: str, who: dict[str, Any]) -> None:
        self._send({"op": "leave", "t": topic, "m": who})

    def remote_count(self, topic: str) -> int:
        return sum(n.counts.get(topic, 0) for k, n in self.nodes.items() if k != self.node)

    def remote_members(self, topic: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for key, node in self.nodes.items():
            if key != self.node:
                found += node.members.get(topic, {}).values()
        return found

    def node_ids(self) -> list[str]:
        """The nodes known alive (this one included)."""
        return sorted({*self.nodes, self.node})

    def _send(self, entry: dict[str, Any]) -> None:
        self._flush_counts()  # keep a node's entries in the order they happened
        self._outbox.append(entry)
        self._wake.set()

    def _flush_counts(self) -> None:
        for topic, count in self._dirty.items():
            self._outbox.append({"op": "count", "t": topic, "c": count})
        self._dirty.clear()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._tasks:
            return
        import redis.asyncio as aioredis  # Redis mode only

        self._client = aioredis.Redis.from_url(self.url, socket_timeout=10)
        self._reader = aioredis.Redis.from_url(self.url, socket_timeout=10)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run()), loop.create_task(self._flusher())]

    async def stop(self) -> None:
        """Leave the cluster: every member of this node leaves on the other nodes."""
        self._stopping = True
        with contextlib.suppress(Exception):
            self._flush_counts()
            await asyncio.wait_for(self._write(), 2.0)
            await asyncio.wait_for(self._gone(self.node), 2.0)
            await self._client.delete(self.node_prefix + self.node)
        self._wake.set()
        if self._reader is not None:
            await self._reader.connection_pool.disconnect()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in (self._client, self._reader):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    # -- the tasks -------------------------------------------------------------------------
    async def _flusher(self) -> None:
        """Write what changed here to the log (pipelined), and the heartbeat."""
        beat = max(self.ttl / 3, 0.05)
        next_beat = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_beat - loop.time()))
            self._wake.clear()
            try:
                self._flush_counts()
                await self._write()
                if loop.time() >= next_beat:
                    await self._heartbeat()
                    next_beat = loop.time() + beat
            except Exception as exc:
                if self._stopping:
                    return
                log.warning("presence: Redis unavailable (%s); retrying", exc)
                await asyncio.sleep(min(1.0, beat))

    async def _write(self) -> None:
        if not self._outbox:
            return
        entries, self._outbox = self._outbox, []
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for entry in entries:
                    data = orjson.dumps({"n": self.node, **entry})
                    pipe.xadd(self.log_key, {"d": data}, maxlen=100_000, approximate=True)
                await pipe.execute()
        except Exception:
            self._outbox[:0] = entries  # written again once Redis is back
            raise

    async def _heartbeat(self) -> None:
        """Refresh this node's snapshot; declare gone the nodes whose snapshot expired;
        end the local subscriptions of topics deleted elsewhere."""
        self.presence.sweep(self.exists)
        client = self._client
        state = orjson.dumps(self.presence.local_state())
        ms = int(self.ttl * 1000)
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(self.node_prefix + self.node, state, px=ms)
            pipe.sadd(self.nodes_key, self.node)
            pipe.smembers(self.nodes_key)
            _, _, members = await pipe.execute()
        others = {m.decode() for m in members} | set(self.nodes)
        others.discard(self.node)
        if not others:
            return
        names = sorted(others)
        alive = await client.exists(*[self.node_prefix + n for n in names])
        if alive == len(names):
            return
        for name in names:
            if not await client.exists(self.node_prefix + name):
                await self._gone(name)

    async def _gone(self, name: str) -> None:
        data = orjson.dumps({"n": self.node, "op": "gone", "x": name})
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.xadd(self.log_key, {"d": data}, maxlen=100_000, approximate=True)
            pipe.srem(self.nodes_key, name)
            await pipe.execute()

    async def _run(self) -> None:
        """Read the presence log (after loading the snapshots of the live nodes)."""
        while not self._stopping:
            try:
                await self._bootstrap()
                while not self._stopping:
                    await self._read_once()
            except Exception as exc:
                if self._stopping:
                    return
                log.warning("presence: reading the log failed (%s); retrying", exc)
                await asyncio.sleep(0.5)

    async def _bootstrap(self) -> None:
        client = self._reader
        last = await client.xrevrange(self.log_key, count=1)
        self._last_id = last[0][0].decode() if last else "0-0"
        names = sorted(m.decode() for m in await client.smembers(self.nodes_key))
        snapshots = await client.mget([self.node_prefix + n for n in names]) if names else []
        for name, raw in zip(names, snapshots, strict=True):
            if raw is None or name == self.node:
                continue
            self._load(name, orjson.loads(raw))
        # Whatever this node missed meanwhile (Redis lost): the others learn its state,
        # which supersedes the changes still waiting to be written.
        self._outbox.clear()
        self._dirty.clear()
        self._send({"op": "sync", "s": self.presence.local_state()})

    def _load(self, name: str, state: dict[str, Any]) -> _Node:
        node = _Node(
            counts=dict(state.get("counts", {})),
            members={t: {m["client_id"]: m for m in ms} for t, ms in state["members"].items()},
        )
        self.nodes[name] = node
        for topic in node.counts:
            self.owners.setdefault(topic, name)
        return node

    async def _read_once(self) -> None:
        reply = await self._reader.xread({self.log_key: self._last_id}, block=1000, count=500)
        for _, entries in reply or ():
            for entry_id, fields in entries:
                self._last_id = entry_id.decode()
                try:
                    self.apply(orjson.loads(fields[b"d"]))
                except Exception:
                    log.exception("presence: bad log entry %r", fields)

    # -- applying the log ------------------------------------------------------------------
    def total(self, topic: str) -> int:
        return sum(n.counts.get(topic, 0) for n in self.nodes.values())

    def apply(self, entry: dict[str, Any]) -> None:
        """Apply one log entry (every node, in the same order)."""
        sender, op = entry["n"], entry["op"]
        if op == "gone":
            self._apply_gone(sender, entry["x"])
            return
        node = self.nodes.setdefault(sender, _Node())
        if op == "count":
            topic = entry["t"]
            before = self.total(topic)
            node.counts[topic] = entry["c"]
            if not entry["c"]:
                del node.counts[topic]
            self._transition(topic, before, sender)
        elif op in ("join", "leave"):
            topic, who = entry["t"], entry["m"]
            members = node.members.setdefault(topic, {})
            had = members.pop(who["client_id"], None)
            if op == "join":
                members[who["client_id"]] = who
            if not members:
                del node.members[topic]
            if sender != self.node and (op == "join" or had is not None):
                self.presence.notify(topic, op, who)
        elif op == "sync":
            self._apply_sync(sender, node, entry["s"])

    def _apply_sync(self, sender: str, old: _Node, state: dict[str, Any]) -> None:
        befores = {t: self.total(t) for t in {*old.counts, *state.get("counts", {})}}
        new = self._load(sender, state)
        if sender != self.node:
            self._notify_diff(old, new)
        for topic, before in befores.items():
            self._transition(topic, before, sender)

    def _apply_gone(self, sender: str, name: str) -> None:
        if name == self.node and not self._stopping:
            # Declared gone (a pause longer than the TTL): tell the others again.
            self.nodes.pop(name, None)
            self._send({"op": "sync", "s": self.presence.local_state()})
            return
        old = self.nodes.pop(name, None)
        if old is None:
            return
        if name != self.node:
            self._notify_diff(old, _Node())
        for topic in old.counts:
            before = self.total(topic) + old.counts[topic]
            self._transition(topic, before, sender, gone=name)

    def _notify_diff(self, old: _Node, new: _Node) -> None:
        for topic in {*old.members, *new.members}:
            was, now = old.members.get(topic, {}), new.members.get(topic, {})
            for key, who in was.items():
                if key not in now:
                    self.presence.notify(topic, "leave", who)
            for key, who in now.items():
                if key not in was:
                    self.presence.notify(topic, "join", who)

    def _transition(self, topic: str, before: int, sender: str, gone: str | None = None) -> None:
        after = self.total(topic)
        if before == 0 and after > 0:
            self.owners[topic] = sender
            if sender == self.node:
                self.presence.fire(True, topic)
        elif before > 0 and after == 0:
            owner = self.owners.pop(topic, None)
            if owner == self.node:
                self.presence.fire(False, topic)
        elif after > 0 and gone is not None and self.owners.get(topic) == gone:
            # The owner left while others still listen: the smallest node id with
            # subscribers takes the topic over (and runs on_occupied for it).
            heir = min(k for k, n in self.nodes.items() if n.counts.get(topic))
            self.owners[topic] = heir
            if heir == self.node:
                self.presence.fire(True, topic)

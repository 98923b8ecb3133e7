"""Key names and the Lua scripts that keep the topic registry and its streams consistent.

- ``<prefix>:topics``: a set, the registry of topics (the cluster-wide truth);
- ``<prefix>:control``: a stream of ``{op: create|delete, topic}`` notices that every
  node's reader follows, so each node creates and deletes its local topics in order;
- ``<prefix>:stream:<topic>``: the topic's messages, fields ``d`` (the JSON bytes),
  ``e`` (event type, "" for none), ``t`` (publish time, epoch seconds) and ``s`` (the
  topic's publish count: 1, 2, 3, ...);
- ``<prefix>:seq:<topic>``: that count, incremented with each ``XADD`` in one script, so
  a reader seeing ``s`` jump from n to m knows that exactly m-n-1 entries were trimmed
  before it read them (``MAXLEN ~`` trims silently);
- ``<prefix>:ids`` and ``<prefix>:clock``: the deployment's id counter and the last id
  issued. A publish gives its entry the id ``"<ms>-<n>"``, n from that one counter and
  ms the Redis clock, never below the last ms used (a clock stepping back cannot reorder
  ids): ids then increase in publish order across every topic, so a stream of several
  topics is in id order and its last id resumes all of them (PROTOCOL.md). Entries of
  older versions (Redis's own ids) still compare as (ms, seq).

Each script runs atomically, so a publish never lands in the stream of a topic that
another node just deleted. (All keys of a script must live on one Redis node: no Cluster.)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: How many control notices the control stream keeps (``MAXLEN ~``).
CONTROL_MAXLEN = 10_000


@dataclass(frozen=True)
class Keys:
    """The Redis key names under one ``prefix``."""

    prefix: str = "fanwire"

    @property
    def registry(self) -> str:
        return f"{self.prefix}:topics"

    @property
    def control(self) -> str:
        return f"{self.prefix}:control"

    def stream(self, topic: str) -> str:
        return f"{self.prefix}:stream:{topic}"

    def seq(self, topic: str) -> str:
        return f"{self.prefix}:seq:{topic}"

    @property
    def ids(self) -> str:
        return f"{self.prefix}:ids"

    @property
    def clock(self) -> str:
        return f"{self.prefix}:clock"

    def dedupe(self, topic: str) -> str:
        """A sorted set: the topic's idempotency keys, scored by expiry (Redis ms)."""
        return f"{self.prefix}:dedupe:{topic}"

    def dedupe_ids(self, topic: str) -> str:
        """A hash: idempotency key -> the message id its first publish got."""
        return f"{self.prefix}:dedupe-ids:{topic}"

    def active(self, topic: str) -> str:
        """Set (with the topic's idle_ttl as expiry) while a node has subscribers of it."""
        return f"{self.prefix}:active:{topic}"

    def lease(self, name: str) -> str:
        return f"{self.prefix}:lease:{name}"

    def topic_of(self, stream_key: str | bytes) -> str:
        """The topic whose stream is ``stream_key``."""
        key = stream_key.decode() if isinstance(stream_key, bytes) else stream_key
        return key[len(self.prefix) + len(":stream:") :]


_LAST_CONTROL = """
local function last_control()
  local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  if #last > 0 then return last[1][1] end
  return '0-0'
end
"""

#: KEYS registry, stream, seq, ids, clock; ARGV topic, maxlen, data, event, ts, max_age
#: (ms, 0 or absent: none; older entries are trimmed with MINID ~) -> the id, or nil (no
#: topic). The id is "<ms>-<n>" (see the module docstring); ms also stays above
#: the stream's last entry, which may be of an older version or from before a clock step.
PUBLISH = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return false end
local seq = redis.call('INCR', KEYS[3])
local n = redis.call('INCR', KEYS[4])
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local clock = redis.call('GET', KEYS[5])
if clock then ms = math.max(ms, tonumber(string.match(clock, '^(%d+)-')) or 0) end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last > 0 then
  local last_ms, last_seq = string.match(last[1][1], '^(%d+)-(%d+)$')
  last_ms, last_seq = tonumber(last_ms), tonumber(last_seq)
  if ms < last_ms or (ms == last_ms and n <= last_seq) then ms = last_ms + 1 end
end
local id = string.format('%.0f-%.0f', ms, n)
redis.call('SET', KEYS[5], id)
local added = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], id,
                         'd', ARGV[3], 'e', ARGV[4], 't', ARGV[5], 's', seq)
local max_age = tonumber(ARGV[6] or '0') or 0
if max_age > 0 then
  redis.call('XTRIM', KEYS[2], 'MINID', '~', string.format('%.0f-0', ms - max_age))
end
return added
"""

#: A batch in one script (atomic, one command): KEYS as PUBLISH; ARGV topic, maxlen,
#: max_age (ms, 0: none), the count of messages, then their data, event and ts, each as
#: one column of :func:`pack_column` (two arguments: a batch of 100 in 10 arguments, not
#: 300: redis-py packs each argument in Python, ~1 us each) -> the ids in order, or nil
#: (no topic). Each id, publish count and the clock follow PUBLISH as if the messages
#: came one after another.
PUBLISH_MANY = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return false end
local count = tonumber(ARGV[4])
local function column(blob, lengths)
  local out, pos = {}, 1
  for i = 1, count do
    if lengths == '' then
      out[i] = blob
    else
      local len = struct.unpack('<I4', lengths, 4 * i - 3)
      out[i] = string.sub(blob, pos, pos + len - 1)
      pos = pos + len
    end
  end
  return out
end
local data, events, stamps = column(ARGV[5], ARGV[6]), column(ARGV[7], ARGV[8]),
                             column(ARGV[9], ARGV[10])
local seq = redis.call('INCRBY', KEYS[3], count) - count
local n = redis.call('INCRBY', KEYS[4], count) - count
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local clock = redis.call('GET', KEYS[5])
if clock then ms = math.max(ms, tonumber(string.match(clock, '^(%d+)-')) or 0) end
local last_ms, last_seq = -1, -1
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last > 0 then
  local a, b = string.match(last[1][1], '^(%d+)-(%d+)$')
  last_ms, last_seq = tonumber(a), tonumber(b)
end
local ids = {}
for i = 1, count do
  seq, n = seq + 1, n + 1
  if ms < last_ms or (ms == last_ms and n <= last_seq) then ms = last_ms + 1 end
  local id = string.format('%.0f-%.0f', ms, n)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], id,
             'd', data[i], 'e', events[i], 't', stamps[i], 's', seq)
  last_ms, last_seq = ms, n
  ids[i] = id
end
redis.call('SET', KEYS[5], ids[count])
local max_age = tonumber(ARGV[3]) or 0
if max_age > 0 then
  redis.call('XTRIM', KEYS[2], 'MINID', '~', string.format('%.0f-0', ms - max_age))
end
return ids
"""


def pack_column(values: Sequence[str | bytes]) -> tuple[bytes, bytes]:
    """One column of PUBLISH_MANY's arguments: (the values concatenated, their byte
    lengths as little-endian uint32s), or (the value, b"") when every value is the same
    one (a batch's single event type or publish time)."""
    raw = [value.encode() if isinstance(value, str) else value for value in values]
    if raw and raw.count(raw[0]) == len(raw):
        return raw[0], b""
    return b"".join(raw), struct.pack(f"<{len(raw)}I", *map(len, raw))


def publish_many_args(
    topic: str, maxlen: int, max_age_ms: int, items: Sequence[Sequence[str | bytes]]
) -> list[Any]:
    """ARGV of PUBLISH_MANY for ``items``, each (data, event, ts)."""
    data, events, stamps = zip(*items, strict=True) if items else ((), (), ())
    args: list[Any] = [topic, maxlen, max_age_ms, len(items)]
    for column in (data, events, stamps):
        args += pack_column(column)
    return args


#: KEYS registry, control, stream, seq; ARGV topic, max_topics, control maxlen
#: PUBLISH with an idempotency key. KEYS those of PUBLISH, then the topic's dedupe keys
#: (:meth:`Keys.dedupe`, :meth:`Keys.dedupe_ids`); ARGV those of PUBLISH (all six), then
#: the key, the window (ms) and the most keys kept -> {id, 1} for a repeat within the
#: window (nothing published), {id, 0} for a new publish, or nil (no topic). One script:
#: two nodes receiving the same retry publish once.
PUBLISH_ONCE = (
    """
local function hdel_all(key, fields)
  for i = 1, #fields, 500 do
    redis.call('HDEL', key, unpack(fields, i, math.min(i + 499, #fields)))
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now)
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
  hdel_all(KEYS[7], expired)
end
local first = redis.call('HGET', KEYS[7], ARGV[7])
if first then return {first, 1} end
local id = (function()
"""
    + PUBLISH
    + """
end)()
if not id then return false end
local window = tonumber(ARGV[8])
redis.call('ZADD', KEYS[6], now + window, ARGV[7])
redis.call('HSET', KEYS[7], ARGV[7], id)
local over = redis.call('ZCARD', KEYS[6]) - tonumber(ARGV[9])
if over > 0 then
  local oldest = redis.call('ZRANGE', KEYS[6], 0, over - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[6], 0, over - 1)
  hdel_all(KEYS[7], oldest)
end
redis.call('PEXPIRE', KEYS[6], window)
redis.call('PEXPIRE', KEYS[7], window)
return {id, 0}
"""
)

#: KEYS registry, control, stream, seq (and any more keys of the topic, deleted with it);
#: ARGV topic, max_topics, control maxlen, options (JSON given to create_topic, "" none:
#: carried by the control notice, so every node applies them)
#: -> {1 created | 0 existed | -1 too many topics, control id to wait for}.
CREATE = (
    _LAST_CONTROL
    + """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return {0, last_control()} end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return {-1, last_control()} end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('DEL', unpack(KEYS, 3))
local id
if ARGV[4] and ARGV[4] ~= '' then
  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*',
                  'op', 'create', 'topic', ARGV[1], 'options', ARGV[4])
else
  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*',
                  'op', 'create', 'topic', ARGV[1])
end
return {1, id}
"""
)

#: KEYS registry, control, stream, seq (and any more keys of the topic, deleted with it);
#: ARGV topic, control maxlen
#: -> {1 deleted | 0 unknown, control id to wait for}.
DELETE = (
    _LAST_CONTROL
    + """
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return {0, last_control()} end
redis.call('DEL', unpack(KEYS, 3))
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
                      'op', 'delete', 'topic', ARGV[1])
return {1, id}
"""
)

#: DELETE unless the topic's last key (:meth:`Keys.active`) exists: the idle_ttl sweep of
#: any node deletes an idle topic, once, and not while a node has subscribers of it.
DELETE_IDLE = (
    _LAST_CONTROL
    + """
if redis.call('EXISTS', KEYS[#KEYS]) == 1 then return {0, last_control()} end
"""
    + DELETE[len(_LAST_CONTROL) :]
)

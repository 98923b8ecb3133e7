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

from dataclasses import dataclass

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

#: KEYS registry, stream, seq, ids, clock; ARGV topic, maxlen, data, event, ts -> the id,
#: or nil (no topic). The id is "<ms>-<n>" (see the module docstring); ms also stays above
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
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], id,
                  'd', ARGV[3], 'e', ARGV[4], 't', ARGV[5], 's', seq)
"""

#: A batch in one script (atomic, one command): KEYS as PUBLISH; ARGV topic, maxlen, then
#: data, event and ts of each message -> the ids in order, or nil (no topic). Each id,
#: publish count and the clock follow PUBLISH as if the messages came one after another.
PUBLISH_MANY = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return false end
local count = (#ARGV - 2) / 3
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
             'd', ARGV[3 * i], 'e', ARGV[3 * i + 1], 't', ARGV[3 * i + 2], 's', seq)
  last_ms, last_seq = ms, n
  ids[i] = id
end
redis.call('SET', KEYS[5], ids[count])
return ids
"""

#: KEYS registry, control, stream, seq; ARGV topic, max_topics, control maxlen
#: -> {1 created | 0 existed | -1 too many topics, control id to wait for}.
CREATE = (
    _LAST_CONTROL
    + """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return {0, last_control()} end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return {-1, last_control()} end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[3], KEYS[4])
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*',
                      'op', 'create', 'topic', ARGV[1])
return {1, id}
"""
)

#: KEYS registry, control, stream, seq; ARGV topic, control maxlen
#: -> {1 deleted | 0 unknown, control id to wait for}.
DELETE = (
    _LAST_CONTROL
    + """
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return {0, last_control()} end
redis.call('DEL', KEYS[3], KEYS[4])
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
                      'op', 'delete', 'topic', ARGV[1])
return {1, id}
"""
)

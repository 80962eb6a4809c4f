"""The Lua scripts: one per write, each atomic because Redis runs a script alone.

Every script takes the caller's clock as ``now`` (milliseconds), so expiry follows the store's
clock, as on every backend; the server's own clock only drives the native key TTLs, which are set
``grace`` milliseconds past the deadline and so never remove a session the caller still sees as
live. A session's keys and its shard's indexes share one hash tag (see :mod:`.layout`), so a
script's keys always lie in one slot.

Return codes: ``0`` done, ``1`` no live session, ``2`` compare-and-set refused, ``3`` evicted.

A server at ``maxmemory`` refuses a script (one without flags, as these are) only at its first
command that may add memory (``SET``, ``HSET``, ``ZADD``, ``SETRANGE``, ``HINCRBY``...), and only
if the script wrote nothing before it: once it has written, Redis lets it finish rather than stop
it halfway. A ``DEL`` or ``ZREM`` is a write too, even of nothing. So every script that adds data
makes such a command its first write, after its reads; a full server then refuses it before it
changed anything, and the client reports ``OOM`` with "nothing was written". The scripts that only
remove (delete, purge, clear) have no such command and run on a full server: they make room.
(``#!lua`` flags would say this to Redis directly, but need Redis 7; the order works on every
version.) ``test_redis_maxmemory.py`` runs every write against a full server.
"""

from __future__ import annotations

import hashlib

__all__ = ["Script"]

_PRELUDE = """
local ZERO8 = string.rep('\\0', 8)
local function fmt(n) return string.format('%.0f', n) end
local function deadline_of(v)
  local a, b, c, d, e, f, g, h = string.byte(v, 10, 17)
  return ((((((a * 256 + b) * 256 + c) * 256 + d) * 256 + e) * 256 + f) * 256 + g) * 256 + h
end
local function is_live(v, now)
  if not v then return false end
  local d = deadline_of(v)
  return d == 0 or d > now
end
local function ttl_of(deadline, now, grace)
  if deadline == 0 then return 0 end
  return math.max(deadline - now, 0) + grace
end
local function score_of(deadline)
  if deadline == 0 then return '+inf' end
  return fmt(deadline)
end
local function set_record(key, value, ttl)
  if ttl > 0 then
    redis.call('SET', key, value, 'PX', fmt(ttl))
  else
    redis.call('SET', key, value)
  end
end
local function next_handle(counter_key, seed, shard, shards)
  -- The counter starts at a random seed: a namespace cleared and used again does not hand out
  -- the handles of before, so an old event id never names a new stream.
  local counter = tonumber(seed)
  if redis.call('HSETNX', counter_key, 'next', seed) == 0 then
    counter = redis.call('HINCRBY', counter_key, 'next', 1)
  end
  return fmt((counter - 1) * tonumber(shards) + tonumber(shard) + 1)
end
local function expire(key, ttl)
  if ttl > 0 then redis.call('PEXPIRE', key, fmt(ttl)) else redis.call('PERSIST', key) end
end
local function notify(events_key)
  -- The session's watchers (see notifications.py): its channel is named like its events key.
  -- Sharded from Redis 7 on (the first version with REDIS_VERSION_NUM), so on a cluster the
  -- message stays on the session's shard.
  if redis.REDIS_VERSION_NUM then
    redis.call('SPUBLISH', events_key, '')
  else
    redis.call('PUBLISH', events_key, '')
  end
end
"""


class Script:
    """A Lua script, called by its SHA1 (``EVALSHA``) and sent whole on ``NOSCRIPT``.

    ``writes`` is false for the scripts that only read: ``wait_replicas`` waits after the others.
    """

    def __init__(self, name: str, body: str, *, writes: bool = True) -> None:
        self.name = name
        self.writes = writes
        self.source = _PRELUDE + body
        self.sha = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()


# KEYS: record, events, deadline index, name index.
# ARGV: value, deadline, now, grace, id.
CREATE = Script(
    "create",
    """
local now = tonumber(ARGV[3])
if is_live(redis.call('GET', KEYS[1]), now) then return 1 end
local deadline = tonumber(ARGV[2])
set_record(KEYS[1], ARGV[1], ttl_of(deadline, now, tonumber(ARGV[4])))  -- first: see above
redis.call('DEL', KEYS[2])  -- an expired predecessor's events never carry over
redis.call('ZADD', KEYS[3], score_of(deadline), ARGV[5])
redis.call('ZADD', KEYS[4], 0, ARGV[5])
return 0
""",
)

# KEYS: record, events, deadline index.
# ARGV: value (its header holds the new deadline), expected version (8 bytes), now, the key TTL in
# ms ('0' for none), the new deadline's index score. The id is the record key's suffix.
# The hottest write, so lean on purpose: the client computes the TTL and the score (formatting
# numbers in Lua costs more than the commands), and nothing runs that a write does not need.
UPDATE = Script(
    "update",
    """
local cur = redis.call('GET', KEYS[1])
if not is_live(cur, tonumber(ARGV[3])) then return 1 end
if string.sub(cur, 2, 9) ~= ARGV[2] then return 2 end
local value = ARGV[1]
local incarnation, stored = string.sub(value, 18, 25), string.sub(cur, 18, 25)
if incarnation ~= stored then
  if incarnation ~= ZERO8 then return 2 end
  value = string.sub(value, 1, 17) .. stored .. string.sub(value, 26)
end
local px = ARGV[4]
if px ~= '0' then
  redis.call('SET', KEYS[1], value, 'PX', px)
else
  redis.call('SET', KEYS[1], value)
end
if string.sub(value, 10, 17) ~= string.sub(cur, 10, 17) then  -- the deadline moved
  if px ~= '0' then redis.call('PEXPIRE', KEYS[2], px) else redis.call('PERSIST', KEYS[2]) end
  local id = string.sub(KEYS[1], string.find(KEYS[1], '}:s:', 1, true) + 4)
  redis.call('ZADD', KEYS[3], ARGV[5], id)
end
return 0
""",
)

# KEYS: record 1..n, events 1..n, deadline index (all of one shard).
# ARGV: now, grace, check only ('1' or '0'), then per record: id, value, expected version, deadline.
# Returns {code, ids}: 1 with every missing id, else 2 with every stale id, else 0.
UPDATE_MANY = Script(
    "update_many",
    """
local n = (#KEYS - 1) / 2
local index = KEYS[#KEYS]
local now, grace = tonumber(ARGV[1]), tonumber(ARGV[2])
local missing, stale, current = {}, {}, {}
for i = 1, n do
  local at = 4 + (i - 1) * 4
  local cur = redis.call('GET', KEYS[i])
  if not is_live(cur, now) then
    missing[#missing + 1] = ARGV[at]
  else
    current[i] = cur
    local incarnation = string.sub(ARGV[at + 1], 18, 25)
    if string.sub(cur, 2, 9) ~= ARGV[at + 2]
        or (incarnation ~= ZERO8 and incarnation ~= string.sub(cur, 18, 25)) then
      stale[#stale + 1] = ARGV[at]
    end
  end
end
if #missing > 0 then return {1, missing} end
if #stale > 0 then return {2, stale} end
if ARGV[3] == '1' then return {0, {}} end
for i = 1, n do
  local at = 4 + (i - 1) * 4
  local value = ARGV[at + 1]
  value = string.sub(value, 1, 17) .. string.sub(current[i], 18, 25) .. string.sub(value, 26)
  local deadline = tonumber(ARGV[at + 3])
  local ttl = ttl_of(deadline, now, grace)
  set_record(KEYS[i], value, ttl)
  expire(KEYS[n + i], ttl)
  redis.call('ZADD', index, score_of(deadline), ARGV[at])
end
return {0, {}}
""",
)

# KEYS: record, events, deadline index, name index.  ARGV: now, id.  Returns 1 if it was live.
DELETE = Script(
    "delete",
    """
local live = is_live(redis.call('GET', KEYS[1]), tonumber(ARGV[1]))
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
notify(KEYS[2])
if live then return 1 end
return 0
""",
)

# KEYS: record, events, deadline index.
# ARGV: event id, deadline, deadline (8 bytes), now, grace, id.
LAST_EVENT_ID_SET = Script(
    "last_event_id_set",
    """
local now = tonumber(ARGV[4])
if not is_live(redis.call('GET', KEYS[1]), now) then return 1 end
redis.call('SETRANGE', KEYS[1], 9, ARGV[3])  -- the deadline; payload and version stay
local deadline = tonumber(ARGV[2])
local ttl = ttl_of(deadline, now, tonumber(ARGV[5]))
expire(KEYS[1], ttl)
redis.call('HSET', KEYS[2], 'l', ARGV[1])
expire(KEYS[2], ttl)
redis.call('ZADD', KEYS[3], score_of(deadline), ARGV[6])
return 0
""",
)

# KEYS: record, events.  ARGV: now.  Returns {1} or {0, last event id or nil}.
LAST_EVENT_ID_GET = Script(
    "last_event_id_get",
    """
if not is_live(redis.call('GET', KEYS[1]), tonumber(ARGV[1])) then return {1} end
return {0, redis.call('HGET', KEYS[2], 'l')}
""",
    writes=False,
)

# KEYS: record, events, the shard's handle counter.
# ARGV: stream id, value, retention, now, grace, shard, shard count, handle seed.
# Returns {1} or {0, handle, sequence}. Events hash fields: m:<stream id> -> handle,
# t:<handle> -> stream id, n:<handle> -> last sequence, f:<handle> -> first kept sequence,
# <handle>:<sequence> -> the event ('d' .. data, or 'p' for a priming event).
EVENT_APPEND = Script(
    "event_append",
    """
local now = tonumber(ARGV[4])
local cur = redis.call('GETRANGE', KEYS[1], 0, 16)  -- the header up to the deadline is enough
if cur == '' or not is_live(cur, now) then return {1} end
local handle = redis.call('HGET', KEYS[2], 'm:' .. ARGV[1])
if not handle then
  handle = next_handle(KEYS[3], ARGV[8], ARGV[6], ARGV[7])
  redis.call('HSET', KEYS[2], 'm:' .. ARGV[1], handle, 't:' .. handle, ARGV[1], 'f:' .. handle, 1)
  -- The events hash may be new: give it the session's lifetime. Afterwards whatever moves the
  -- deadline (update, last event id) moves the hash's too, so later appends need not.
  expire(KEYS[2], ttl_of(deadline_of(cur), now, tonumber(ARGV[5])))
end
local seq = redis.call('HINCRBY', KEYS[2], 'n:' .. handle, 1)
redis.call('HSET', KEYS[2], handle .. ':' .. fmt(seq), ARGV[2])
local keep = tonumber(ARGV[3])
if seq > keep then  -- only then can the stream hold more than it keeps (its first is >= 1)
  local first = tonumber(redis.call('HGET', KEYS[2], 'f:' .. handle))
  if seq - first + 1 > keep then
    for s = first, seq - keep do redis.call('HDEL', KEYS[2], handle .. ':' .. fmt(s)) end
    redis.call('HSET', KEYS[2], 'f:' .. handle, fmt(seq - keep + 1))
  end
end
notify(KEYS[2])
return {0, handle, fmt(seq)}
""",
)

# KEYS: record, events.  ARGV: handle, sequence, now.
# Returns {1} unknown, {3} evicted, or {0, stream id, event after event...}.
EVENT_REPLAY = Script(
    "event_replay",
    """
if not is_live(redis.call('GET', KEYS[1]), tonumber(ARGV[3])) then return {1} end
local handle, seq = ARGV[1], tonumber(ARGV[2])
local stream = redis.call('HGET', KEYS[2], 't:' .. handle)
if not stream then return {1} end
local last = tonumber(redis.call('HGET', KEYS[2], 'n:' .. handle))
if seq > last then return {1} end
if seq < tonumber(redis.call('HGET', KEYS[2], 'f:' .. handle)) then return {3} end
local out = {0, stream}
local s = seq + 1
while s <= last do
  local fields = {}
  local upto = math.min(last, s + 999)
  for i = s, upto do fields[#fields + 1] = handle .. ':' .. fmt(i) end
  local values = redis.call('HMGET', KEYS[2], unpack(fields))
  for i = 1, #values do out[#out + 1] = values[i] end
  s = upto + 1
end
return out
""",
    writes=False,
)

# KEYS: deadline index, name index.  ARGV: now, limit, shard key base.
# Removes up to ``limit`` expired sessions of the shard; returns how many. The record and events
# keys are built here from the base: they carry the same hash tag, so they are in this slot.
PURGE = Script(
    "purge",
    """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('DEL', ARGV[3] .. 's:' .. id, ARGV[3] .. 'e:' .. id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return #ids
""",
)

# KEYS: deadline index, name index, handle counter.  ARGV: limit, shard key base.
# Removes up to ``limit`` sessions of the shard, and the indexes and handle counter once none is
# left (the counter restarts at a random seed, see next_handle).
CLEAR = Script(
    "clear",
    """
local ids = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)
for _, id in ipairs(ids) do
  redis.call('DEL', ARGV[2] .. 's:' .. id, ARGV[2] .. 'e:' .. id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
if #ids < tonumber(ARGV[1]) then redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) end
return #ids
""",
)

# KEYS: record, events.  ARGV: now.
# Returns {1} or {0, record value, last event id or nil, then per stream in handle order:
# stream id, event count, each event value}.
DUMP = Script(
    "dump",
    """
local cur = redis.call('GET', KEYS[1])
if not is_live(cur, tonumber(ARGV[1])) then return {1} end
local out = {0, cur, redis.call('HGET', KEYS[2], 'l')}
local handles = {}
for _, name in ipairs(redis.call('HKEYS', KEYS[2])) do
  if string.sub(name, 1, 2) == 't:' then handles[#handles + 1] = tonumber(string.sub(name, 3)) end
end
table.sort(handles)
for _, number in ipairs(handles) do
  local handle = fmt(number)
  local first = tonumber(redis.call('HGET', KEYS[2], 'f:' .. handle))
  local last = tonumber(redis.call('HGET', KEYS[2], 'n:' .. handle) or 0)
  out[#out + 1] = redis.call('HGET', KEYS[2], 't:' .. handle)
  out[#out + 1] = math.max(last - first + 1, 0)
  for s = first, last do out[#out + 1] = redis.call('HGET', KEYS[2], handle .. ':' .. fmt(s)) end
end
return out
""",
    writes=False,
)

# KEYS: record, events, deadline index, name index, the shard's handle counter.
# ARGV: value, deadline, now, grace, id, has last event id ('1'/'0'), last event id, retention,
# shard, shard count, handle seed, stream count, then per stream: stream id, event count, each
# event value.
# Returns 1 if loaded, 0 if a live session has the id (nothing written).
LOAD = Script(
    "load",
    """
local now = tonumber(ARGV[3])
if is_live(redis.call('GET', KEYS[1]), now) then return 0 end
local deadline = tonumber(ARGV[2])
local ttl = ttl_of(deadline, now, tonumber(ARGV[4]))
set_record(KEYS[1], ARGV[1], ttl)  -- first: see above
redis.call('DEL', KEYS[2])
redis.call('ZADD', KEYS[3], score_of(deadline), ARGV[5])
redis.call('ZADD', KEYS[4], 0, ARGV[5])
if ARGV[6] == '1' then redis.call('HSET', KEYS[2], 'l', ARGV[7]) end
local keep = tonumber(ARGV[8])
local at = 13
for _ = 1, tonumber(ARGV[12]) do
  local stream, count = ARGV[at], tonumber(ARGV[at + 1])
  local handle = next_handle(KEYS[5], ARGV[11], ARGV[9], ARGV[10])
  local seq = 0
  for j = math.max(count - keep, 0) + 1, count do
    seq = seq + 1
    redis.call('HSET', KEYS[2], handle .. ':' .. fmt(seq), ARGV[at + 1 + j])
  end
  redis.call('HSET', KEYS[2], 'm:' .. stream, handle, 't:' .. handle, stream,
    'f:' .. handle, 1, 'n:' .. handle, seq)
  at = at + 2 + count
end
expire(KEYS[2], ttl)
notify(KEYS[2])
return 1
""",
)

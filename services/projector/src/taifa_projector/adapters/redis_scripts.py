"""The Lua scripts of the auth-cache writer (`redis_cache`): each runs atomically in Redis, inside the batch's
MULTI or in a rebuild's pipeline. Text only; `redis_cache` registers them and says what it sends.
"""

from __future__ import annotations

# KEYS = entry keys; ARGV[1] = a JSON array with, for each KEYS[i], the array of the values of
# ENTRY_FIELDS (one argument for the whole batch keeps the client's encoding cheap), ARGV[2] = the JSON array
# of ENTRY_FIELDS, ARGV[3] / ARGV[4] = the index (1-based) of `position` / `plan` in it. Each entry is written only
# if its position is newer than the stored one (compare-on-position), or at the same position when it carries the
# account's plan and the stored one does not (`newer_entry`); every field is written, so a v2 entry
# replaces a v1 entry completely. Returns how many applied.
WRITE_IF_NEWER = """
local applied = 0
local values = cjson.decode(ARGV[1])
local fields = cjson.decode(ARGV[2])
local at = tonumber(ARGV[3])
local plan_at = tonumber(ARGV[4])
for i, key in ipairs(KEYS) do
  local v = values[i]
  local current = redis.call('HGET', key, 'position')
  local newer = (not current) or tonumber(current) < tonumber(v[at])
  if (not newer) and tonumber(current) == tonumber(v[at]) and v[plan_at] ~= 'free' then
    -- same position, the account's plan learnt since (fold.newer_entry): a known plan never goes back to free
    newer = redis.call('HGET', key, 'plan') ~= v[plan_at]
  end
  if newer then
    local args = {}
    for j, name in ipairs(fields) do
      args[#args + 1] = name
      args[#args + 1] = v[j]
    end
    redis.call('HSET', key, unpack(args))
    applied = applied + 1
  end
end
return applied
"""

# KEYS[1] = offsets hash, KEYS[2] = the epoch; ARGV = field, offset pairs: the offsets PostgreSQL had recorded for the
# batch's partitions before the batch committed. The cache must have seen at least those (each batch's write
# raises them, in order): one below means Redis lost writes the read model kept (restored from an older snapshot,
# a lagging replica promoted, or an owner that died between its two commits), and the batch's own write would
# raise the offsets past the gap, hiding it from the guard. So the epoch is deleted first, in the batch's MULTI
# (relays refuse the cache; the guard rebuilds it from the read model). Returns 1 when it deleted the epoch.
CHECK_CONTINUITY = """
for i = 1, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if (not current) or tonumber(current) < tonumber(ARGV[i + 1]) then
    return redis.call('DEL', KEYS[2])
  end
end
return 0
"""

# KEYS[1] = offsets hash; ARGV = field, offset pairs. Offsets only move forward.
RAISE_OFFSETS = """
for i = 1, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if (not current) or tonumber(current) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
"""

# KEYS[1] = the watermark, KEYS[2] = the epoch; ARGV[1] = a candidate, ARGV[2] = the highest watermark this
# writer has seen (0: none, no check). Only ever raised. A watermark below what this writer has seen means
# Redis went back in time (restarted from an older snapshot): raising it would make relays trust stale
# entries again, so the epoch is deleted instead (relays: unavailable; the guard rebuilds) and -1 returned.
# Otherwise returns the watermark after the call (the writer remembers the highest).
RAISE_WATERMARK = """
local current = redis.call('GET', KEYS[1])
local seen = tonumber(ARGV[2])
if seen > 0 and ((not current) or tonumber(current) < seen) then
  redis.call('DEL', KEYS[2])
  return -1
end
if (not current) or tonumber(current) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
  return tonumber(ARGV[1])
end
return tonumber(current)
"""

# KEYS = (owner key, owner position key) pairs; ARGV[1] = a JSON array with, per pair, [account id, holds
# ("1" / "0"), position]. A change applies only when newer than the stored position; a release (holds "0")
# deletes the owner only while it still names that account, and then keeps its position.
WRITE_OWNERS = """
local values = cjson.decode(ARGV[1])
for i = 1, #KEYS, 2 do
  local v = values[(i + 1) / 2]
  local current = redis.call('GET', KEYS[i + 1])
  if (not current) or tonumber(current) < tonumber(v[3]) then
    if v[2] == '1' then
      redis.call('SET', KEYS[i], v[1])
      redis.call('SET', KEYS[i + 1], v[3])
    else
      local owner = redis.call('GET', KEYS[i])
      if (not owner) or owner == v[1] then
        redis.call('DEL', KEYS[i])
        redis.call('SET', KEYS[i + 1], v[3])
      end
    end
  end
end
return 1
"""

# ARGV[1] = key prefix, ARGV[2] = TTL, ARGV[3] = channel, ARGV[4] = the event ids joined by ",": the
# read-your-writes key of each event, then its id on the channel (docs/interfaces.md). One command per
# batch, one argument for all ids (thousands of separate arguments cost the client more than Redis).
SIGNAL_APPLIED = """
local ids = {}
for id in string.gmatch(ARGV[4], '[^,]+') do
  ids[#ids + 1] = id
  redis.call('SET', ARGV[1] .. id, '1', 'EX', ARGV[2])
end
for _, id in ipairs(ids) do
  redis.call('PUBLISH', ARGV[3], id)
end
return #ids
"""

# ARGV[1] = channel, ARGV[2..] = messages, published in that order: a batch's revocations and "credential changed"
# notices in one command (one PUBLISH each inside the MULTI cost the client a queued reply apiece).
PUBLISH_ALL = """
for i = 2, #ARGV do
  redis.call('PUBLISH', ARGV[1], ARGV[i])
end
return #ARGV - 1
"""

# KEYS[1] = the set of rebuilds under way, KEYS[2] = the epoch; ARGV[1] = this rebuild's token (`begin_rebuild`),
# ARGV[2] = the new epoch. The epoch is set only if the token is still in the set: a Redis that lost its data during
# the rebuild (a second flush, a restart without persistence) lost the token too, and the entries loaded before it;
# marked complete, that cache would refuse every credential it no longer holds. Returns 1 when set, else 0.
SET_EPOCH_IF_REBUILT = """
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""

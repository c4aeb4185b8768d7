"""The Redis auth cache (CONTRACT.md §3, format in `taifa_events.auth_cache`) and the read-your-writes signal.

Entries are written with a compare-on-position script, one MULTI/EXEC per batch so that a batch's
entries, the consumed offsets the cache has seen and the applied signals land together. The offsets
(`cache-offsets:<group>`) let the projector notice a cache that lost writes (restart from an old
snapshot, or a crash between the PostgreSQL commit and the Redis write); a missing `EPOCH_KEY`
means the cache was flushed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from uuid import UUID

import redis.asyncio as aioredis
from taifa_events import auth_cache

from taifa_projector.domain.model import AuthEntry
from taifa_projector.domain.records import TopicPartitionKey

CACHE_OFFSETS_PREFIX = "taifa:projector:cache-offsets:"

# KEYS = entry keys; ARGV[1] = a JSON array with, for each KEYS[i], the array of the values of
# ENTRY_FIELDS (one argument for the whole batch keeps the client's encoding cheap). Each entry is
# written only if its position is newer than the stored one (compare-on-position). Returns how many applied.
ENTRY_FIELDS = (
    "credential_id",
    "account_id",
    "domain_id",
    "domain",
    "secret_hash",
    "hash_scheme",
    "active",
    "position",
)
WRITE_IF_NEWER = """
local applied = 0
local values = cjson.decode(ARGV[1])
for i, key in ipairs(KEYS) do
  local v = values[i]
  local current = redis.call('HGET', key, 'position')
  if (not current) or tonumber(current) < tonumber(v[8]) then
    redis.call('HSET', key,
      'credential_id', v[1], 'account_id', v[2], 'domain_id', v[3], 'domain', v[4],
      'secret_hash', v[5], 'hash_scheme', v[6], 'active', v[7], 'position', v[8])
    applied = applied + 1
  end
end
return applied
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


def to_cache_entry(entry: AuthEntry) -> auth_cache.AuthCacheEntry:
    return auth_cache.AuthCacheEntry(
        credential_id=entry.credential_id,
        account_id=entry.account_id,
        domain_id=entry.domain_id,
        domain=entry.domain,
        secret_hash=entry.secret_hash,
        hash_scheme=entry.hash_scheme,
        active=entry.active,
        position=entry.position,
    )


def entry_values(entry: AuthEntry) -> list[str]:
    """The cache fields of an entry in ENTRY_FIELDS order, as `AuthCacheEntry.to_redis` writes them."""
    return [
        str(entry.credential_id),
        str(entry.account_id),
        str(entry.domain_id),
        entry.domain,
        entry.secret_hash,
        entry.hash_scheme,
        "1" if entry.active else "0",
        str(entry.position),
    ]


def _offset_field(tp: TopicPartitionKey) -> str:
    return f"{tp[0]}/{tp[1]}"


class AuthCache:
    """Writes and inspects the auth cache for one consumer group."""

    def __init__(
        self, client: aioredis.Redis, group_id: str, applied_ttl: int = auth_cache.APPLIED_TTL_SECONDS
    ) -> None:
        self.client = client
        self.offsets_key = CACHE_OFFSETS_PREFIX + group_id
        self.applied_ttl = applied_ttl
        self._write_if_newer = client.register_script(WRITE_IF_NEWER)
        self._raise_offsets = client.register_script(RAISE_OFFSETS)
        self._signal_applied = client.register_script(SIGNAL_APPLIED)

    def _queue_entries(self, pipe: aioredis.client.Pipeline, entries: Sequence[AuthEntry]) -> None:
        if not entries:
            return
        keys = [auth_cache.auth_key(entry.username) for entry in entries]
        values = json.dumps([entry_values(entry) for entry in entries])
        pipe.scripts.add(self._write_if_newer)  # type: ignore[arg-type]  # redis-py types the set as sync Scripts
        pipe.evalsha(self._write_if_newer.sha, len(keys), *keys, values)

    def _queue_offsets(self, pipe: aioredis.client.Pipeline, offsets: dict[TopicPartitionKey, int]) -> None:
        if offsets:
            args: list[str | int] = []
            for tp, offset in offsets.items():
                args += [_offset_field(tp), offset]
            pipe.scripts.add(self._raise_offsets)  # type: ignore[arg-type]  # redis-py types the set as sync Scripts
            pipe.evalsha(self._raise_offsets.sha, 1, self.offsets_key, *args)

    async def write_batch(
        self,
        entries: Iterable[AuthEntry],
        offsets: dict[TopicPartitionKey, int],
        applied: Sequence[UUID],
        revoked_usernames: Sequence[str],
    ) -> None:
        """One MULTI/EXEC: entries (if newer), cache offsets, revocations, then the read-your-writes signal."""
        async with self.client.pipeline(transaction=True) as pipe:
            self._queue_entries(pipe, list(entries))
            self._queue_offsets(pipe, offsets)
            for username in revoked_usernames:
                pipe.publish(auth_cache.REVOCATIONS_CHANNEL, username)
            # Last: the API ends its wait on this, so relays must have heard of revocations first.
            if applied:
                pipe.scripts.add(self._signal_applied)  # type: ignore[arg-type]  # redis-py types the set as sync Scripts
                pipe.evalsha(
                    self._signal_applied.sha, 0, auth_cache.APPLIED_KEY_PREFIX, self.applied_ttl,
                    auth_cache.APPLIED_CHANNEL, ",".join(map(str, applied)),
                )  # fmt: skip
            await pipe.execute()

    async def load_entries(self, entries: Sequence[AuthEntry], chunk: int) -> None:
        """Write many entries (compare-on-position) in chunks: cache rebuilds."""
        for start in range(0, len(entries), chunk):
            async with self.client.pipeline(transaction=False) as pipe:
                self._queue_entries(pipe, entries[start : start + chunk])
                await pipe.execute()

    async def raise_offsets(self, offsets: dict[TopicPartitionKey, int]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            self._queue_offsets(pipe, offsets)
            await pipe.execute()

    async def offsets(self) -> dict[TopicPartitionKey, int]:
        raw = await self.client.hgetall(self.offsets_key)
        result: dict[TopicPartitionKey, int] = {}
        for field, value in raw.items():
            topic, _, partition = (field.decode() if isinstance(field, bytes) else field).rpartition("/")
            result[(topic, int(partition))] = int(value)
        return result

    async def epoch(self) -> str | None:
        value = await self.client.get(auth_cache.EPOCH_KEY)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def set_epoch(self, epoch: str) -> None:
        await self.client.set(auth_cache.EPOCH_KEY, epoch)

    async def clear(self) -> int:
        """Delete every auth entry, the epoch and this group's cache offsets (a full rebuild starts here)."""
        removed = 0
        await self.client.delete(auth_cache.EPOCH_KEY, self.offsets_key)
        batch: list[bytes | str] = []
        async for key in self.client.scan_iter(match=auth_cache.KEY_PREFIX + "*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                removed += await self.client.unlink(*batch)
                batch = []
        if batch:
            removed += await self.client.unlink(*batch)
        return removed

    async def all_entries(self) -> dict[str, dict[str, str]]:
        """Every auth entry as stored (checksums, tests)."""
        keys = [key async for key in self.client.scan_iter(match=auth_cache.KEY_PREFIX + "*", count=5000)]
        result: dict[str, dict[str, str]] = {}
        for start in range(0, len(keys), 5000):
            chunk = keys[start : start + 5000]
            async with self.client.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.hgetall(key)
                values = await pipe.execute()
            for key, mapping in zip(chunk, values, strict=True):
                name = key.decode() if isinstance(key, bytes) else key
                result[name] = {
                    (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                    for k, v in mapping.items()
                }
        return result

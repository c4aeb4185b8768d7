"""The relays' usage counters in Redis (taifa_events.usage keys), as the flusher reads them (`ports.UsageCounters`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final
from uuid import UUID

import redis.asyncio as aioredis
from taifa_events import usage

# KEYS[1]: the window's hash, KEYS[2]: the pending set; ARGV[1]: the window's member, then the hash as the flusher
# read it (field, value, ...). The member is removed only if the hash is still exactly that: a relay's batch that
# came in between (its ZADD found the member there and did nothing) keeps it pending. 1: removed, 0: kept.
CLOSE_IF_UNCHANGED: Final = """
local now = redis.call('HGETALL', KEYS[1])
if #now ~= #ARGV - 1 then return 0 end
local read = {}
for i = 2, #ARGV, 2 do read[ARGV[i]] = ARGV[i + 1] end
for i = 1, #now, 2 do
  if read[now[i]] ~= now[i + 1] then return 0 end
end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


class RedisUsageCounters:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._close = client.register_script(CLOSE_IF_UNCHANGED)

    async def pending(self) -> list[tuple[UUID, int]]:
        members = await self.client.zrange(usage.USAGE_PENDING_KEY, 0, -1)
        parsed = (usage.parse_pending_member(member) for member in members if isinstance(member, bytes | str))
        return [window for window in parsed if window is not None]

    async def read(self, credential_id: UUID, window: int) -> dict[str, str]:
        raw = await self.client.hgetall(usage.usage_key(credential_id, window))
        return {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }

    async def close(self, credential_id: UUID, window: int, published: Mapping[str, str]) -> bool:
        read = [item for pair in published.items() for item in pair]
        keys = [usage.usage_key(credential_id, window), usage.USAGE_PENDING_KEY]
        removed = await self._close(keys=keys, args=[usage.pending_member(credential_id, window), *read])
        return bool(removed)

    async def quota_notices(self, most: int) -> list[bytes]:
        # The relays LPUSH: the oldest notices are at the right end; returned oldest first, as stored.
        raw = await self.client.lrange(usage.QUOTA_NOTICES_KEY, -most, -1)
        return [(v if isinstance(v, bytes) else v.encode()) for v in reversed(raw)]

    async def drop_quota_notices(self, notices: Sequence[bytes]) -> None:
        # Each one by its value, from the oldest end (LREM -1): what another instance already removed, or what it
        # published and removed meanwhile, is not found again, so no notice that nobody published is removed (a
        # count from the end would be, when two flushers read the same notices). One transaction.
        if notices:
            async with self.client.pipeline(transaction=True) as pipe:
                for notice in notices:
                    pipe.lrem(usage.QUOTA_NOTICES_KEY, -1, notice)  # type: ignore[arg-type]  # bytes: as stored
                await pipe.execute()

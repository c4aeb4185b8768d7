"""The relays' usage counters in Redis (taifa_events.usage keys), as the flusher reads them (`ports.UsageCounters`)."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import redis.asyncio as aioredis
from taifa_events import usage


class RedisUsageCounters:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

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

    async def close(self, credential_id: UUID, window: int) -> None:
        await self.client.zrem(usage.USAGE_PENDING_KEY, usage.pending_member(credential_id, window))

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

"""Fixed-window request counting per API key or account in Redis."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis

KEY_PREFIX: Final = "taifa:api:ratelimit:"


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after: int


class RateLimiter:
    def __init__(self, client: aioredis.Redis, limit: int, window_seconds: int) -> None:
        self._client = client
        self._limit = limit
        self._window = max(1, window_seconds)

    async def hit(self, subject: str) -> RateDecision:
        now = time.time()
        window = int(now // self._window)
        key = f"{KEY_PREFIX}{subject}:{window}"
        pipe = self._client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, self._window + 1)
        count, _ = await pipe.execute()
        if int(count) <= self._limit:
            return RateDecision(True, 0)
        retry_after = max(1, math.ceil((window + 1) * self._window - now))
        return RateDecision(False, retry_after)

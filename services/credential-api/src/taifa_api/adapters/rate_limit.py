"""Per API key/account request limit: a fixed window counted in Redis, shared by every API process.

While Redis is unreachable the limit is kept per process (in-process token buckets of the same size) instead
of being dropped: availability of writes stays (they need only PostgreSQL), and a key still cannot exceed
the limit times the number of API processes.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from taifa_api import metrics
from taifa_api.domain.throttle import TokenBuckets

KEY_PREFIX: Final = "taifa:api:ratelimit:"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after: int


class RateLimiter:
    def __init__(self, client: aioredis.Redis, limit: int, window_seconds: int) -> None:
        self._client = client
        self._limit = limit
        self._window = max(1, window_seconds)
        self._fallback = TokenBuckets(limit, self._window)

    async def hit(self, subject: str) -> RateDecision:
        try:
            return await self._hit_redis(subject)
        except (RedisError, OSError) as exc:
            metrics.RATE_LIMIT_FALLBACKS.inc()
            log.warning("rate limiter: Redis unavailable (%s); per-process limit applies", type(exc).__name__)
            wait = self._fallback.take(subject, time.monotonic())
            return RateDecision(wait == 0, wait)

    async def _hit_redis(self, subject: str) -> RateDecision:
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

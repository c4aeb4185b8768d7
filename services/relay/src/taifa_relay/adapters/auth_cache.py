"""Reads the projector's auth cache from Redis, counts failed AUTHs per address, listens for revocations.

Redis being unreachable surfaces as `CacheUnavailable`, which the protocol turns into `454 4.7.0`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from taifa_events.auth_cache import REVOCATIONS_CHANNEL, AuthCacheEntry, auth_key

log = logging.getLogger("taifa.relay.cache")

THROTTLE_PREFIX = "taifa:relay:authfail:"
_STAND_IN = {
    b"credential_id": b"00000000-0000-0000-0000-000000000000",
    b"account_id": b"00000000-0000-0000-0000-000000000000",
    b"domain_id": b"00000000-0000-0000-0000-000000000000",
    b"domain": b"stand-in.invalid",
    b"secret_hash": b"0" * 64,
    b"hash_scheme": b"sha256",
    b"active": b"0",
    b"position": b"1",
}


class CacheUnavailable(Exception):
    """Redis could not answer; the caller must fail closed."""


class AuthCache:
    """Credential lookups and failure counters over one Redis connection pool.

    Failure counts live in Redis (shared by every relay instance); an address whose count has reached the
    limit is also remembered here until its window ends, so that AUTH costs one Redis command, not two.
    """

    def __init__(self, url: str, *, failure_window_seconds: int, timeout: float = 2.0) -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
        )
        self._url = url
        self._window = failure_window_seconds
        self._throttled: dict[str, float] = {}

    async def entry(self, username: str) -> AuthCacheEntry | None:
        """The entry for `username`; None if missing or damaged (fail closed)."""
        try:
            mapping = await self._redis.hgetall(auth_key(username))
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(type(exc).__name__) from None
        if not mapping:
            # Unknown user: parse a stand-in entry anyway, so that the reply takes as long as for a known one.
            AuthCacheEntry.from_redis(_STAND_IN)
            return None
        return AuthCacheEntry.from_redis(cast(dict[bytes, bytes], mapping))

    async def still_active(self, username: str, credential_id: str) -> bool:
        """Per-transaction re-check: the entry still exists, is active and is the same credential."""
        try:
            active, current = await self._redis.hmget(auth_key(username), ["active", "credential_id"])
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(type(exc).__name__) from None
        if current is None:
            return False
        current_id = current.decode() if isinstance(current, bytes) else current
        return active in (b"1", "1") and current_id == credential_id

    def is_throttled(self, throttle_key: str) -> bool:
        until = self._throttled.get(throttle_key)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self._throttled[throttle_key]
        return False

    def mark_throttled(self, throttle_key: str) -> None:
        if len(self._throttled) > 100_000:  # bounded memory under a wide attack: forget the expired ones
            now = time.monotonic()
            self._throttled = {k: v for k, v in self._throttled.items() if v > now}
        self._throttled[throttle_key] = time.monotonic() + self._window

    async def record_failure(self, throttle_key: str) -> int:
        """Count one failed AUTH for the address group; the count expires `window` after the first failure."""
        key = THROTTLE_PREFIX + throttle_key
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, self._window, nx=True)
                count, _ = await pipe.execute()
        except (RedisError, OSError):
            log.warning("could not record an AUTH failure", extra={"throttle_key": throttle_key})
            return 0
        return int(count)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def listen_revocations(
        self, on_revoked: Callable[[str], None], stop: asyncio.Event, on_subscribed: Callable[[], None] | None = None
    ) -> None:
        """Call `on_revoked(username)` for every message on the revocation channel; reconnect on errors
        (calling `on_subscribed` after each subscription, since messages may have been missed meanwhile)."""
        while not stop.is_set():
            client = aioredis.Redis.from_url(self._url)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(REVOCATIONS_CHANNEL)
                if on_subscribed is not None:
                    on_subscribed()
                while not stop.is_set():
                    message = await pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        data = message["data"]
                        on_revoked(data.decode() if isinstance(data, bytes) else str(data))
            except (RedisError, OSError) as exc:
                log.warning("revocation channel lost, resubscribing", extra={"error": type(exc).__name__})
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                    await client.aclose()

    async def close(self) -> None:
        await self._redis.aclose()

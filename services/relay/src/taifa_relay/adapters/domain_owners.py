"""Which account has verified a domain name: the projector's `domain_owner_key(name)` entries in Redis.

Read only when a sender is in a strict subdomain of the credential's domain (`policy.owner_lookup_names`),
so the usual exact-domain submission costs no Redis command here. The names of one check are read with one
MGET. Redis failing raises CacheUnavailable and the caller answers with a temporary reply: an unknown owner
never lets a message through. Whether the cache can be trusted at all (epoch present, watermark not gone
backwards) is checked by the credential re-check that runs at the same MAIL and before the upstream send.
"""

from __future__ import annotations

from redis.exceptions import RedisError
from taifa_events.auth_cache import domain_owner_key

from taifa_relay.adapters.redis_connection import REDIS_TIMEOUT_SECONDS, relay_redis
from taifa_relay.application.ports import CacheUnavailable


class DomainOwners:
    """`application.ports.DomainOwnerLookup`: owner lookups over a small Redis pool of their own (the auth
    cache's pool serves every AUTH)."""

    def __init__(self, url: str, *, timeout: float = REDIS_TIMEOUT_SECONDS) -> None:
        self._redis = relay_redis(url, timeout=timeout, retry_on_timeout=False)

    async def owners(self, names: list[str]) -> list[str | None]:
        """The account id that verified each of `names` (None: no account has), in the same order."""
        if not names:
            return []
        try:
            values = await self._redis.mget([domain_owner_key(name) for name in names])
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(type(exc).__name__) from None
        return [value.decode("utf-8", "replace") if isinstance(value, bytes) else value for value in values]

    async def close(self) -> None:
        await self._redis.aclose()

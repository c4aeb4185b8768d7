"""Reads the projector's auth cache from Redis, counts failed AUTHs, listens for revocations.

Every read checks that the cache can be trusted: its epoch exists (it was not flushed) and its watermark (the
highest event position it holds) is not below the highest one this relay has read (it was not restarted from an
older snapshot, where a revoked credential may still be active). Redis unreachable, or a cache that fails this
check, surfaces as `CacheUnavailable`, which the application turns into a temporary `454 4.7.0` / `451 4.3.0`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from redis.exceptions import NoPermissionError, RedisError, ResponseError
from taifa_events import usage
from taifa_events.auth_cache import (
    EPOCH_KEY,
    WATERMARK_KEY,
    AuthCacheEntry,
    auth_key,
)

from taifa_relay.adapters import metrics
from taifa_relay.adapters.cache_scripts import MAIL_CHECK, READ, STAND_IN, STAND_IN_ARGS, fields_of
from taifa_relay.adapters.redis_connection import REDIS_TIMEOUT_SECONDS, relay_redis
from taifa_relay.adapters.redis_multiplex import MultiplexedRedis
from taifa_relay.adapters.usage_buffer import Taken, UsageBuffer
from taifa_relay.application.ports import CacheStale, CacheUnavailable, Lookup, MinuteTaken, WriteRefused

__all__ = [
    "CacheStale",
    "CacheUnavailable",
    "Lookup",
    "MinuteTaken",
    "RedisAuthCacheReader",
    "WriteRefused",
    "failure_keys",
]

log = logging.getLogger("taifa.relay.cache")

THROTTLE_PREFIX = "taifa:relay:authfail:"
# Written by the readiness check with the same commands as the failure counters: a Redis user that may not
# write the relay's keys (a read-only ACL, a read-only replica) makes the relay not ready.
PROBE_KEY = THROTTLE_PREFIX + "readiness-probe"
# Bound of the re-check parse memo (cleared when full: a miss only costs a parse).
_MAX_REREAD_PARSES = 10_000


def failure_keys(address_group: str, username: str) -> tuple[str, str]:
    """The counter keys of (address group, username) and of the address group alone. The username is hashed:
    keys have a bounded size and no username appears in plain text in Redis."""
    digest = hashlib.sha256(username.encode("utf-8", "replace")).hexdigest()[:32]
    return f"{THROTTLE_PREFIX}user:{address_group}:{digest}", f"{THROTTLE_PREFIX}addr:{address_group}"


class RedisAuthCacheReader:
    """The relay's reader of the projector's auth cache (`application.ports.AuthCacheReader`): credential lookups,
    and the relay's own failure counters, over one Redis connection pool. It never writes the cache itself.

    Failure counts live in Redis (shared by every relay instance) and are read in the same round trip as the
    entry; a key whose count has reached its limit is also remembered here until its window ends, so that an
    attack costs no Redis command at all.
    """

    def __init__(
        self,
        url: str,
        *,
        failure_window_seconds: int,
        timeout: float = REDIS_TIMEOUT_SECONDS,
        usage: UsageBuffer | None = None,
        scripts: MultiplexedRedis | None = None,
    ) -> None:
        self._redis = relay_redis(url, timeout=timeout, retry_on_timeout=False)
        # The per-message scripts (AUTH's and the re-checks' reads, MAIL's check) on the connection shared with the
        # sending limits (adapters.redis_multiplex); everything else through the pool.
        self._scripts = scripts if scripts is not None else MultiplexedRedis(self._redis, timeout=timeout)
        self._read_sha = hashlib.sha1(READ.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
        self._script_reads = True
        self._mail_check_sha = hashlib.sha1(MAIL_CHECK.encode()).hexdigest()  # noqa: S324
        self._mail_checks = True  # False once Redis refused the script (an ACL without it): MAIL reads, then counts
        # Usage counts ride on the re-reads of logged-in sessions (adapters.usage_buffer): no round trip of their own.
        self._usage = usage
        self._url = url
        self._window = failure_window_seconds
        self._throttled: dict[str, float] = {}
        # The highest cache watermark read so far: a lower one later means Redis went back in time.
        self._highest_watermark = 0
        self._untrusted_reason: str | None = None
        # The cache epoch last read: a new one means the cache was rebuilt (after a flush, a restore or a crash
        # between the projector's two commits), which publishes no revocation: `on_epoch_change` then marks every
        # logged-in session for a re-read (`SessionRegistry.forget_rechecks`, set by bootstrap).
        self._epoch: bytes | None = None
        self.on_epoch_change: Callable[[], None] | None = None
        self._writes_refused = False
        # username -> (the fields last read by AUTH or a re-check, their parse, the fields as one flat list). A
        # session re-reads its entry twice per message (MAIL and the end of DATA) and it rarely changes: comparing
        # the fields costs far less than parsing them; MAIL's script compares them in Redis. Only the re-checks of
        # logged-in sessions read it: AUTH always parses, so that its timing never tells a recently used username
        # from an unknown one.
        self._reread_parses: dict[str, tuple[dict[bytes, bytes], AuthCacheEntry | None, list[bytes]]] = {}

    # --- reads ---------------------------------------------------------------------------------
    async def lookup(self, username: str, address_group: str) -> Lookup:
        """The entry for `username` (None if missing or damaged: fail closed) and the failure counts, read with
        the cache's epoch and watermark in one MULTI; raises CacheUnavailable / CacheStale."""
        metrics.AUTH_LOOKUPS.inc()
        user_key, address_key = failure_keys(address_group, username)
        try:
            # No usage rides on AUTH's round trips (lookup, failure count): their size would then tell a prober
            # whether its previous attempt named an existing username (usage counts only those).
            mapping, (epoch, watermark, for_user, for_address) = await self._read(
                auth_key(username), EPOCH_KEY, WATERMARK_KEY, user_key, address_key, stand_in=True
            )
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(type(exc).__name__) from None
        self._check_trust(epoch, watermark)
        if mapping:
            entry = AuthCacheEntry.from_redis(mapping)
            self._remember_parse(username, mapping, entry)  # what MAIL's script compares (recheck_and_take_minute)
        else:
            # Unknown user: parse a stand-in entry anyway, so that the reply takes as long as for a known one.
            AuthCacheEntry.from_redis(STAND_IN)
            entry = None
        return Lookup(entry, int(for_user or 0), int(for_address or 0))

    async def reread(self, username: str) -> AuthCacheEntry | None:
        """Re-read of a logged-in session's entry (None: missing or damaged), with the epoch and watermark in one
        MULTI; the application applies the rules (same credential, its secret still valid, not suspended...).
        One script when no usage is due (adapters.usage_buffer drains at most every 0.25 s); else a MULTI that carries
        the usage commands too."""
        if self._usage is None or self._writes_refused or not self._usage.due():
            try:
                mapping, (epoch, watermark) = await self._read(auth_key(username), EPOCH_KEY, WATERMARK_KEY)
            except (RedisError, OSError) as exc:
                raise CacheUnavailable(type(exc).__name__) from None
            self._check_trust(epoch, watermark)
            return self._parsed(username, mapping) if mapping else None
        taken: Taken | None = None
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(auth_key(username))
                pipe.get(EPOCH_KEY)
                pipe.get(WATERMARK_KEY)
                taken = self._drain(pipe)
                replies = await pipe.execute()
        except ResponseError as exc:
            if taken is None:
                raise CacheUnavailable(type(exc).__name__) from None
            self._usage_refused(taken, exc)
            return await self.reread(username)  # the read alone: usage never fails a re-check
        except (RedisError, OSError) as exc:
            self._restore(taken)
            raise CacheUnavailable(type(exc).__name__) from None
        except BaseException:  # cancelled (the client went away): the batches' fate is unknown, they go again
            self._restore(taken)
            raise
        if self._usage is not None:
            self._usage.confirm(taken, replies[3:])
        mapping, epoch, watermark = replies[:3]
        self._check_trust(epoch, watermark)
        if not mapping:
            return None
        return self._parsed(username, cast(dict[bytes, bytes], mapping))

    async def _read(self, *keys: str, stand_in: bool = False) -> tuple[dict[bytes, bytes], list[bytes | None]]:
        """The entry (first key; empty: missing) and the GET of each other key, atomically: the read script as
        EVALSHA_RO (loaded after a NOSCRIPT: a restarted or flushed Redis). A Redis user without the script commands
        (an ACL from before them) gets the same read as one MULTI, with an error logged once."""
        if self._script_reads:
            args = STAND_IN_ARGS if stand_in else ("0", "")
            try:
                found, flat, *values = await self._scripts.evalsha(
                    self._read_sha, READ, list(keys), list(args), read_only=True
                )
                fields = fields_of(flat)
                return (fields if found else {}), values
            except NoPermissionError as exc:
                log.error(
                    "Redis refused the relay's read script: reads go as MULTI; add +evalsha_ro to the relay's ACL "
                    "(deploy/README.md)",
                    extra={"error": str(exc)[:200]},
                )
                self._script_reads = False
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys[0])
            for key in keys[1:]:
                pipe.get(key)
            mapping, *values = await pipe.execute()
        return cast(dict[bytes, bytes], mapping), values

    def _parsed(self, username: str, raw: dict[bytes, bytes]) -> AuthCacheEntry | None:
        parsed = self._reread_parses.get(username)
        if parsed is not None and parsed[0] == raw:
            return parsed[1]  # the very same stored fields: the same entry, without parsing them again
        entry = AuthCacheEntry.from_redis(raw)
        self._remember_parse(username, raw, entry)
        return entry

    def _remember_parse(self, username: str, raw: dict[bytes, bytes], entry: AuthCacheEntry | None) -> None:
        if len(self._reread_parses) >= _MAX_REREAD_PARSES:
            self._reread_parses.clear()
        self._reread_parses[username] = (raw, entry, [part for pair in raw.items() for part in pair])

    async def recheck_and_take_minute(
        self, username: str, judged: AuthCacheEntry, credential_id: str, per_minute: int, now: float
    ) -> MinuteTaken | None:
        """MAIL's re-read and per-minute count in one script (`cache_scripts.MAIL_CHECK`), when the fields `judged`
        was parsed from are still known here; None otherwise, or when Redis refuses the script (the caller then
        re-reads and counts separately). Raises CacheUnavailable / CacheStale (CacheStale: nothing counted)."""
        known = self._reread_parses.get(username)
        # The fields last read for this username parse to the entry judged (usually that very object; another
        # session's AUTH or re-read of the same fields made an equal one): the script compares Redis with them.
        if known is None or not self._mail_checks or self._writes_refused:
            return None
        if known[1] is not judged and known[1] != judged:
            return None
        counter = usage.minute_limit_key(credential_id, usage.minute_start(now))
        args: list[str | int | bytes] = [auth_key(username), EPOCH_KEY, WATERMARK_KEY, self._highest_watermark]
        args += [per_minute, usage.MINUTE_LIMIT_TTL_SECONDS, *known[2]]
        try:
            same, counted, epoch, watermark, *read = await self._scripts.evalsha(
                self._mail_check_sha, MAIL_CHECK, [counter], args
            )
        except ResponseError as exc:  # NOPERM (an ACL without EVALSHA), READONLY, OOM...: the two commands instead
            if isinstance(exc, NoPermissionError):
                self._mail_checks = False
            log.error("Redis refused MAIL's script: MAIL re-reads, then counts", extra={"error": str(exc)[:200]})
            return None
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(type(exc).__name__) from None
        if same:
            # Checked by the script against the highest watermark as it was when sent: counted, so trusted.
            self._highest_watermark = max(self._highest_watermark, int(watermark))
            return MinuteTaken(unchanged=True, counted=bool(counted), entry=judged)
        self._check_trust(epoch, watermark)
        raw = fields_of(read[0]) if read else {}
        return MinuteTaken(unchanged=False, counted=False, entry=self._parsed(username, raw) if raw else None)

    def _drain(self, pipe: Any) -> Taken | None:
        """The buffered usage commands into this MULTI, unless Redis refuses this relay's writes (then the reads
        go alone until the readiness probe finds Redis writable again)."""
        if self._usage is None or self._writes_refused:
            return None
        return self._usage.drain_into(pipe)

    def _usage_refused(self, taken: Taken, exc: ResponseError) -> None:
        self._restore(taken)
        self._write_refused(exc)

    def _restore(self, taken: Taken | None) -> None:
        if self._usage is not None:
            self._usage.restore(taken)

    def _check_trust(self, epoch: bytes | None, watermark: bytes | None) -> None:
        if epoch != self._epoch:
            if self._epoch is not None and self.on_epoch_change is not None:
                self.on_epoch_change()
            self._epoch = epoch
        reason = None
        if epoch is None:
            reason = "epoch missing (flushed or not yet built)"
        elif watermark is None or not watermark.isdigit():
            reason = "watermark missing"
        elif int(watermark) < self._highest_watermark:
            reason = "watermark went backwards (restored from an older snapshot)"
        if reason is None:
            self._highest_watermark = int(cast(bytes, watermark))
            if self._untrusted_reason is not None:
                log.warning("auth cache trusted again", extra={"watermark": self._highest_watermark})
                self._untrusted_reason = None
                metrics.CACHE_TRUSTED.set(1)
            return
        if reason != self._untrusted_reason:
            log.error(
                "auth cache not trusted, AUTH answers 454 until the projector repairs it",
                extra={"reason": reason, "highest_watermark_seen": self._highest_watermark},
            )
            self._untrusted_reason = reason
            metrics.CACHE_TRUSTED.set(0)
        raise CacheStale(reason)

    @property
    def highest_watermark(self) -> int:
        return self._highest_watermark

    # --- failure counters ----------------------------------------------------------------------
    def is_throttled(self, address_group: str, username: str) -> bool:
        """True while this relay has seen either counter of this attempt at its limit (until its window ends)."""
        now = time.monotonic()
        for key in failure_keys(address_group, username):
            until = self._throttled.get(key)
            if until is None:
                continue
            if until > now:
                return True
            del self._throttled[key]
        return False

    def mark_throttled(self, address_group: str, username: str, *, username_too: bool, address: bool) -> None:
        if len(self._throttled) > 100_000:  # bounded memory under a wide attack: forget the expired ones
            now = time.monotonic()
            self._throttled = {k: v for k, v in self._throttled.items() if v > now}
        user_key, address_key = failure_keys(address_group, username)
        until = time.monotonic() + self._window
        if username_too:
            self._throttled[user_key] = until
        if address:
            self._throttled[address_key] = until

    async def record_failure(self, address_group: str, username: str) -> tuple[int, int]:
        """Count one failed AUTH for (address group, username) and for the address group; each count expires
        `window` after its first failure. Raises WriteRefused / CacheUnavailable: never a silent zero."""
        user_key, address_key = failure_keys(address_group, username)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(user_key)
                pipe.expire(user_key, self._window, nx=True)
                pipe.incr(address_key)
                pipe.expire(address_key, self._window, nx=True)
                for_user, _, for_address, _ = await pipe.execute()
        except ResponseError as exc:
            self._write_refused(exc)
            raise WriteRefused(type(exc).__name__) from None
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(type(exc).__name__) from None
        return int(for_user), int(for_address)

    def _write_refused(self, exc: ResponseError) -> None:
        metrics.REDIS_WRITES_REFUSED.inc()
        if not self._writes_refused:
            # Loud: the failure counters cannot be kept, so AUTH fails closed (454) and the relay is not ready.
            log.error(
                "Redis refused a write: the relay's Redis user needs write access to taifa:relay:* "
                "(see the Redis ACLs in deploy/README.md); AUTH answers 454 and /readyz is not ready",
                extra={"error": str(exc)[:200]},
            )
        self._writes_refused = True
        metrics.REDIS_WRITABLE.set(0)

    async def writable(self) -> bool:
        """Readiness: Redis answers and accepts the writes the failure counters need. Also learns the cache's
        watermark, so that a relay with no logins still knows how far the cache had got before a restore
        from an older snapshot (a lower value read here is ignored: the lookups refuse it)."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(PROBE_KEY)
                pipe.expire(PROBE_KEY, 60)
                pipe.get(WATERMARK_KEY)
                _, _, watermark = await pipe.execute()
        except ResponseError as exc:
            self._write_refused(exc)
            return False
        except (RedisError, OSError):
            return False
        if watermark is not None and watermark.isdigit():
            self._highest_watermark = max(self._highest_watermark, int(watermark))
        if self._writes_refused:
            log.warning("Redis accepts the relay's writes again")
            self._writes_refused = False
        metrics.REDIS_WRITABLE.set(1)
        return True

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._scripts.aclose()
        await self._redis.aclose()

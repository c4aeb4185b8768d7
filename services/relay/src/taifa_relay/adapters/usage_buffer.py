"""Usage counting in Redis without a round trip of its own (`application.ports.UsageRecorder`).

The application records into this buffer (memory only, no I/O); the buffered commands (HINCRBY, HSET of the last-use
fields, EXPIRE, ZADD to the pending set, in taifa_events.usage's keys) are appended to the next MULTI the relay sends
anyway for a logged-in session: the MAIL and end-of-DATA re-reads. Not to AUTH's own round trips: usage counts only
existing usernames, so a larger AUTH round trip would tell a prober that its previous attempt named one. A buffer left
non-empty is flushed by its own pipeline one second later (a quiet relay, or AUTH-only traffic). The counts of many
sessions in the same hour add up in one HINCRBY. A failed MULTI puts its counts back. A relay that crashes loses at
most what it buffered (about one second)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from typing import Any, Final

from redis.exceptions import RedisError
from taifa_events import usage

from taifa_relay.adapters.redis_connection import REDIS_TIMEOUT_SECONDS, relay_redis

log = logging.getLogger("taifa.relay.usage")

FLUSH_AFTER_SECONDS: Final = 1.0
# At most one drain into the relay's MULTIs per this interval: under load the counts of many messages then go out
# as one HINCRBY per field, instead of a few commands per message (each costs the relay CPU to encode).
DRAIN_EVERY_SECONDS: Final = 0.25

Taken = tuple[dict[str, dict[str, int]], dict[str, dict[str, str]], dict[str, int]]


class UsageBuffer:
    """Counts waiting for the next Redis round trip, per usage hash (credential and hour)."""

    def __init__(self, url: str, *, timeout: float = REDIS_TIMEOUT_SECONDS) -> None:
        self._redis = relay_redis(url, timeout=timeout, retry_on_timeout=False)
        self._incr: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._set: dict[str, dict[str, str]] = defaultdict(dict)
        self._pending: dict[str, int] = {}
        self._flush: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_drain = 0.0

    # --- recording (application.ports.UsageRecorder) --------------------------------------------
    def _hash(self, credential_id: str, account_id: str, now: float) -> str:
        window = usage.window_start(now)
        key = usage.usage_key(credential_id, window)
        if key not in self._set or usage.FIELD_ACCOUNT_ID not in self._set[key]:
            self._set[key][usage.FIELD_ACCOUNT_ID] = account_id
        self._pending[usage.pending_member(credential_id, window)] = window
        self._schedule()
        return key

    def _last_used(self, key: str, secret_id: str, client_ip: str, now: float) -> None:
        fields = self._set[key]
        fields[usage.FIELD_LAST_USED_AT] = str(int(now))
        fields[usage.FIELD_LAST_USED_IP] = client_ip
        fields[usage.FIELD_LAST_SECRET_ID] = secret_id
        fields[usage.secret_last_used_field(secret_id)] = str(int(now))

    def auth_succeeded(self, credential_id: str, account_id: str, secret_id: str, client_ip: str, now: float) -> None:
        key = self._hash(credential_id, account_id, now)
        self._incr[key][usage.FIELD_AUTH_SUCCESSES] += 1
        self._last_used(key, secret_id, client_ip, now)

    def auth_failed(self, credential_id: str, account_id: str, reason: str, now: float) -> None:
        key = self._hash(credential_id, account_id, now)
        self._incr[key][usage.FIELD_AUTH_FAILURES] += 1
        self._incr[key][usage.refused_field(reason)] += 1

    def refused(self, credential_id: str, account_id: str, reason: str, now: float) -> None:
        self._incr[self._hash(credential_id, account_id, now)][usage.refused_field(reason)] += 1

    def delivered(
        self,
        credential_id: str,
        account_id: str,
        secret_id: str,
        client_ip: str,
        recipients: int,
        size: int,
        now: float,
    ) -> None:
        key = self._hash(credential_id, account_id, now)
        counts = self._incr[key]
        counts[usage.FIELD_MESSAGES] += 1
        counts[usage.FIELD_RECIPIENTS] += recipients
        counts[usage.FIELD_BYTES] += size
        self._last_used(key, secret_id, client_ip, now)

    # --- sending -------------------------------------------------------------------------------
    def due(self) -> bool:
        """Whether `drain_into` would add anything now (something buffered, the last drain long enough ago)."""
        return bool(self._pending) and time.monotonic() - self._last_drain >= DRAIN_EVERY_SECONDS

    def drain_into(self, pipe: Any, *, force: bool = False) -> Taken | None:
        """Append every buffered command to `pipe` (a MULTI about to be executed) and empty the buffer; returns
        what was taken, for `restore` if the MULTI fails (None: nothing added: nothing buffered, or the last drain
        was less than DRAIN_EVERY_SECONDS ago and `force` is not set)."""
        if not self._pending:
            return None
        now = time.monotonic()
        if not force and now - self._last_drain < DRAIN_EVERY_SECONDS:
            return None
        self._last_drain = now
        taken: Taken = (self._incr, self._set, self._pending)
        self._incr, self._set, self._pending = defaultdict(lambda: defaultdict(int)), defaultdict(dict), {}
        incr, hset, pending = taken
        for key in set(incr) | set(hset):
            for field, amount in incr.get(key, {}).items():
                pipe.hincrby(key, field, amount)
            if hset.get(key):
                pipe.hset(key, mapping=hset[key])
            pipe.expire(key, usage.USAGE_TTL_SECONDS)
        pipe.zadd(usage.USAGE_PENDING_KEY, pending)
        return taken

    def restore(self, taken: Taken | None) -> None:
        """Put back what a failed MULTI took (counts add up; a newer last-use value wins)."""
        if taken is None:
            return
        incr, hset, pending = taken
        for key, counts in incr.items():
            for field, amount in counts.items():
                self._incr[key][field] += amount
        for key, fields in hset.items():
            self._set[key] = {**fields, **self._set.get(key, {})}
        for member, window in pending.items():
            self._pending.setdefault(member, window)
        self._schedule()

    def _schedule(self) -> None:
        if self._flush is not None:
            return
        with contextlib.suppress(RuntimeError):  # no running loop (unit use): the next MULTI takes the counts
            self._flush = asyncio.get_running_loop().call_later(FLUSH_AFTER_SECONDS, self._start_flush)

    def _start_flush(self) -> None:
        self._flush = None
        if self._pending and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self.flush())

    async def flush(self) -> None:
        """Send what is buffered in a pipeline of its own (nothing else went to Redis for a second)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            taken = self.drain_into(pipe, force=True)
            if taken is None:
                return
            try:
                await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("usage counts not flushed, kept for the next try", extra={"error": type(exc).__name__})
                self.restore(taken)

    async def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        with contextlib.suppress(Exception):
            await self.flush()
        await self._redis.aclose()


class NoUsage:
    """Usage counting switched off (TAIFA_RELAY_USAGE_ENABLED=false, to measure what counting costs)."""

    def auth_succeeded(self, credential_id: str, account_id: str, secret_id: str, client_ip: str, now: float) -> None:
        return None

    def auth_failed(self, credential_id: str, account_id: str, reason: str, now: float) -> None:
        return None

    def refused(self, credential_id: str, account_id: str, reason: str, now: float) -> None:
        return None

    def delivered(
        self,
        credential_id: str,
        account_id: str,
        secret_id: str,
        client_ip: str,
        recipients: int,
        size: int,
        now: float,
    ) -> None:
        return None

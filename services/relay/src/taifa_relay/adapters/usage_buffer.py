"""Usage counting in Redis without a round trip of its own (`application.ports.UsageRecorder`).

The application records into this buffer (memory only, no I/O); the buffered commands (HINCRBY, HSET of the last-use
fields, EXPIRE, ZADD to the pending set, in taifa_events.usage's keys) are appended to the next MULTI the relay sends
anyway for a logged-in session: the MAIL and end-of-DATA re-reads. Not to AUTH's own round trips: usage counts only
existing usernames, so a larger AUTH round trip would tell a prober that its previous attempt named one. A buffer left
non-empty is flushed by its own pipeline one second later (a quiet relay, or AUTH-only traffic). The counts of many
sessions in the same hour add up in one HINCRBY. A relay that crashes loses at most what it buffered (about one
second).

Each drain is one batch, applied once: a script (`APPLY_BATCH`) applies it only if its sequence number is above the
last one Redis applied for this process (`usage.usage_applied_key`), and records it. A MULTI that failed, or whose
answer never came (a timeout: Redis may have applied it all the same), leaves its batches unconfirmed: they go again,
first and unchanged, with the next drain, and Redis skips those it already applied, so a late answer never counts a
message twice. Only one drain is in flight at a time, so batches reach Redis in their order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Final

from redis.exceptions import RedisError
from taifa_events import usage

from taifa_relay.adapters.redis_connection import REDIS_TIMEOUT_SECONDS, relay_redis

log = logging.getLogger("taifa.relay.usage")

FLUSH_AFTER_SECONDS: Final = 1.0
# At most one drain into the relay's MULTIs per this interval: under load the counts of many messages then go out
# as one HINCRBY per field, instead of a few commands per message (each costs the relay CPU to encode).
DRAIN_EVERY_SECONDS: Final = 0.25

# Unconfirmed batches kept for another try at most (a Redis outage of hours): the oldest are then given up (logged).
MAX_UNCONFIRMED: Final = 1000

# Only commands the relay's Redis user may run (deploy/README.md's ACL: no GET/SET of its own keys, HMGET and HSET).
# KEYS[1]: this process's applied marker (a hash: `seq`), KEYS[2]: the pending set, KEYS[3..]: the usage hashes.
# ARGV[1]: the batch's sequence number, ARGV[2]: the hashes' TTL, ARGV[3]: the marker's TTL, ARGV[4]: the generation
# of a hash this batch creates (`usage.FIELD_GENERATION`: a hash with neither it nor `account_id` is new); then for
# each hash, in KEYS order, the number of counters and their (field, amount) pairs, the number of last-use fields and
# their (field, value) pairs; then the pending set's (score, member) pairs. Returns the number of commands Redis
# refused (a key of another type), or -1 when the batch was applied before.
APPLY_BATCH: Final = f"""
local last = redis.call('HMGET', KEYS[1], 'seq')[1]
if last and tonumber(ARGV[1]) <= tonumber(last) then return -1 end
redis.call('HSET', KEYS[1], 'seq', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
local refused, i = 0, 5
local function run(...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err then refused = refused + 1 end
  return reply
end
for k = 3, #KEYS do
  local known = run('HMGET', KEYS[k], '{usage.FIELD_GENERATION}', '{usage.FIELD_ACCOUNT_ID}')
  if type(known) == 'table' and not known.err and not known[1] and not known[2] then
    run('HSET', KEYS[k], '{usage.FIELD_GENERATION}', ARGV[4])
  end
  for _ = 1, tonumber(ARGV[i]) do run('HINCRBY', KEYS[k], ARGV[i + 1], ARGV[i + 2]); i = i + 2 end
  i = i + 1
  for _ = 1, tonumber(ARGV[i]) do run('HSET', KEYS[k], ARGV[i + 1], ARGV[i + 2]); i = i + 2 end
  i = i + 1
  run('EXPIRE', KEYS[k], ARGV[2])
end
while i < #ARGV do run('ZADD', KEYS[2], ARGV[i], ARGV[i + 1]); i = i + 2 end
return refused
"""


@dataclass(frozen=True)
class Batch:
    """One drain's commands as `APPLY_BATCH`'s keys and arguments, with its sequence number."""

    seq: int
    keys: list[str]
    args: list[str | int]


Taken = list[Batch]


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
        self._writer = uuid.uuid4().hex  # this process: its batches' marker, and the generations it creates
        self._seq = 0
        self._unconfirmed: list[Batch] = []  # sent, answer lost or refused: sent again first, unchanged
        self._settled = asyncio.Event()  # set while no drain is in flight
        self._settled.set()

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
    @property
    def _in_flight(self) -> bool:
        return not self._settled.is_set()

    def idle(self) -> bool:
        """Nothing buffered, unconfirmed or in flight: every count recorded so far is in Redis."""
        return not (self._pending or self._unconfirmed or self._in_flight)

    def due(self) -> bool:
        """Whether `drain_into` would add anything now (something buffered or unconfirmed, no drain in flight, the
        last drain long enough ago)."""
        return (
            bool(self._pending or self._unconfirmed)
            and not self._in_flight
            and time.monotonic() - self._last_drain >= DRAIN_EVERY_SECONDS
        )

    def drain_into(self, pipe: Any, *, force: bool = False) -> Taken | None:
        """Append the unconfirmed batches and a new one of everything buffered to `pipe` (a MULTI about to be
        executed) and empty the buffer; returns them, for `confirm` once the MULTI answered or `restore` if it did
        not (None: nothing added: nothing to send, a drain in flight, or the last drain was less than
        DRAIN_EVERY_SECONDS ago and `force` is not set)."""
        if self._in_flight or not (self._pending or self._unconfirmed):
            return None
        now = time.monotonic()
        if not force and now - self._last_drain < DRAIN_EVERY_SECONDS:
            return None
        self._last_drain = now
        batches, self._unconfirmed = self._unconfirmed, []
        if self._pending:
            batches.append(self._batch())
        for batch in batches:
            pipe.eval(APPLY_BATCH, len(batch.keys), *batch.keys, *batch.args)
        self._settled.clear()
        return batches

    def _batch(self) -> Batch:
        """Everything buffered as the next batch (the buffer emptied)."""
        incr, hset, pending = self._incr, self._set, self._pending
        self._incr, self._set, self._pending = defaultdict(lambda: defaultdict(int)), defaultdict(dict), {}
        self._seq += 1
        keys = [usage.usage_applied_key(self._writer), usage.USAGE_PENDING_KEY]
        generation = f"{self._writer}.{self._seq}"  # this process, this batch: unique
        args: list[str | int] = [self._seq, usage.USAGE_TTL_SECONDS, usage.USAGE_APPLIED_TTL_SECONDS, generation]
        for key in set(incr) | set(hset):
            keys.append(key)
            counts, fields = incr.get(key, {}), hset.get(key, {})
            args.append(len(counts))
            for field, amount in counts.items():
                args += (field, amount)
            args.append(len(fields))
            for field, value in fields.items():
                args += (field, value)
        for member, window in pending.items():
            args += (window, member)
        return Batch(self._seq, keys, args)

    def confirm(self, taken: Taken | None, replies: list[Any]) -> None:
        """The MULTI carrying `taken` answered (`replies`: its scripts' replies, in order): the batches are applied."""
        if taken is None:
            return
        self._settled.set()
        if self._pending or self._unconfirmed:  # counted meanwhile: the timer's flush may have found this in flight
            self._schedule()
        refused = sum(r for r in replies if isinstance(r, int) and r > 0)
        if refused:
            log.warning("Redis refused some usage commands (a key of another type)", extra={"refused": refused})

    def restore(self, taken: Taken | None) -> None:
        """The MULTI carrying `taken` failed or never answered: its batches go again, first, with the next drain
        (Redis skips any it did apply)."""
        if taken is None:
            return
        self._settled.set()
        self._unconfirmed = [*taken, *self._unconfirmed]
        if len(self._unconfirmed) > MAX_UNCONFIRMED:
            dropped = len(self._unconfirmed) - MAX_UNCONFIRMED
            del self._unconfirmed[:dropped]
            log.error("usage batches given up after too many failed tries", extra={"batches": dropped})
        self._schedule()

    def _schedule(self) -> None:
        if self._flush is not None:
            return
        with contextlib.suppress(RuntimeError):  # no running loop (unit use): the next MULTI takes the counts
            self._flush = asyncio.get_running_loop().call_later(FLUSH_AFTER_SECONDS, self._start_flush)

    def _start_flush(self) -> None:
        self._flush = None
        if (self._pending or self._unconfirmed) and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self.flush())

    async def flush(self) -> None:
        """Send what is buffered and unconfirmed in a pipeline of its own (nothing else went to Redis for a second),
        after the drain in flight, if any, has answered."""
        while self._in_flight:
            await self._settled.wait()
        async with self._redis.pipeline(transaction=True) as pipe:
            taken = self.drain_into(pipe, force=True)
            if taken is None:
                return
            try:
                replies = await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("usage counts not flushed, kept for the next try", extra={"error": type(exc).__name__})
                self.restore(taken)
                return
            except BaseException:
                self.restore(taken)
                raise
            self.confirm(taken, replies)

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

"""The Redis auth cache from the writer's side (docs/architecture.md; format in `taifa_events.auth_cache`), and
the read-your-writes signal.

Entries are written with a compare-on-position script, one MULTI/EXEC per batch so that a batch's
entries, domain owners, the watermark, the consumed offsets the cache has seen, the revocations, the
"credential changed" notices and the applied signals land together. The offsets (`cache-offsets:<group>`)
let the projector notice a cache that lost writes (restart from an old snapshot, or a crash between the
PostgreSQL commit and the Redis write); a missing `EPOCH_KEY` means the cache was flushed.

Domain owners: `domain_owner_key(name)` holds the owning account id as a plain string; the position of
the event that last changed it is kept beside it in `OWNER_POSITION_PREFIX + name` (projector-only
bookkeeping, never read by the relay), so an older event never overwrites a newer one and a release
leaves its position behind (a late, older verification cannot bring the name back).

Every method reports a driver's failure as `StoreUnavailable` / `StoreRejected` (`driver_errors`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from uuid import UUID, uuid4

import redis.asyncio as aioredis
from taifa_events import auth_cache

from taifa_projector.adapters.driver_errors import redis_errors
from taifa_projector.adapters.redis_scripts import (
    CHECK_CONTINUITY,
    PUBLISH_ALL,
    RAISE_OFFSETS,
    RAISE_WATERMARK,
    SET_EPOCH_IF_REBUILT,
    SIGNAL_APPLIED,
    WRITE_IF_NEWER,
    WRITE_OWNERS,
)
from taifa_projector.application.ports import EpochDropped
from taifa_projector.domain.log_positions import TopicPartitionKey
from taifa_projector.domain.model import AuthEntry, DomainOwner

CACHE_OFFSETS_PREFIX = "taifa:projector:cache-offsets:"
# The rebuilds under way (a token each, `begin_rebuild`); kept a day after the last one began (a rebuild that
# crashed leaves its token, harmless).
REBUILDS_KEY = "taifa:projector:cache-rebuilds"
REBUILDS_TTL_SECONDS = 86_400
OWNER_POSITION_PREFIX = "taifa:projector:domain-owner-position:"

# The fields of an entry, in the order `redis_scripts.WRITE_IF_NEWER` receives their values.
ENTRY_FIELDS = (
    "format",
    "credential_id",
    "account_id",
    "domain_id",
    "domain",
    "secret_hash",
    "hash_scheme",
    "active",
    "position",
    "status",
    "secrets",
    "expires_at",
    "allowed_cidrs",
    "limits",
    "plan",
)
_FIELDS_JSON = json.dumps(ENTRY_FIELDS)
FORMAT = str(auth_cache.CACHE_FORMAT)
_POSITION_INDEX = ENTRY_FIELDS.index("position") + 1
_PLAN_INDEX = ENTRY_FIELDS.index("plan") + 1


def to_cache_entry(entry: AuthEntry) -> auth_cache.AuthCacheEntry:
    """The entry as the shared format reads it (tests check `entry_values` against its `to_redis`)."""
    mapping = dict(zip(ENTRY_FIELDS, entry_values(entry), strict=True))
    parsed = auth_cache.AuthCacheEntry.from_redis(mapping)
    assert parsed is not None, "the projector wrote an entry the shared format cannot read"
    return parsed


def entry_values(entry: AuthEntry) -> list[str]:
    """The cache fields of an entry in ENTRY_FIELDS order, as `AuthCacheEntry.to_redis` writes them (built from
    the entry's own strings: no model validation per written entry)."""
    return [
        FORMAT,
        str(entry.credential_id),
        str(entry.account_id),
        str(entry.domain_id),
        entry.domain,
        entry.secret_hash,
        entry.hash_scheme,
        "1" if entry.active else "0",
        str(entry.position),
        entry.status,
        entry.secrets,
        "" if entry.expires_at is None else str(entry.expires_at),
        entry.allowed_cidrs,
        entry.limits,
        entry.plan,
    ]


def owner_position_key(name: str) -> str:
    return OWNER_POSITION_PREFIX + auth_cache.domain_owner_key(name).removeprefix(auth_cache.DOMAIN_OWNER_PREFIX)


def _offset_field(tp: TopicPartitionKey) -> str:
    return f"{tp[0]}/{tp[1]}"


def _offset_args(offsets: dict[TopicPartitionKey, int]) -> list[str | int]:
    """The (field, offset) pairs the offsets scripts take as ARGV, flattened."""
    return [value for tp, offset in offsets.items() for value in (_offset_field(tp), offset)]


class RedisAuthCacheWriter:
    """Writes and inspects the auth cache for one consumer group (`ports.AuthCacheWriter`; the relay's
    `AuthCache` is the reader)."""

    def __init__(
        self, client: aioredis.Redis, group_id: str, applied_ttl: int = auth_cache.APPLIED_TTL_SECONDS
    ) -> None:
        self.client = client
        self.offsets_key = CACHE_OFFSETS_PREFIX + group_id
        self.applied_ttl = applied_ttl
        self._write_if_newer = client.register_script(WRITE_IF_NEWER)
        self._raise_offsets = client.register_script(RAISE_OFFSETS)
        self._check_continuity = client.register_script(CHECK_CONTINUITY)
        self._raise_watermark = client.register_script(RAISE_WATERMARK)
        # The highest watermark this instance has written or read back: a lower one later is a regression.
        self.highest_watermark = 0
        self._write_owners = client.register_script(WRITE_OWNERS)
        self._signal_applied = client.register_script(SIGNAL_APPLIED)
        self._publish_all = client.register_script(PUBLISH_ALL)
        self._set_epoch_if_rebuilt = client.register_script(SET_EPOCH_IF_REBUILT)

    def _queue_entries(self, pipe: aioredis.client.Pipeline, entries: Sequence[AuthEntry]) -> None:
        if not entries:
            return
        keys = [auth_cache.auth_key(entry.username) for entry in entries]
        values = json.dumps([entry_values(entry) for entry in entries])
        pipe.scripts.add(self._write_if_newer)  # type: ignore[arg-type]  # redis-py types the set as sync Scripts
        pipe.evalsha(self._write_if_newer.sha, len(keys), *keys, values, _FIELDS_JSON, _POSITION_INDEX, _PLAN_INDEX)

    def _queue_owners(self, pipe: aioredis.client.Pipeline, owners: Sequence[DomainOwner]) -> None:
        if not owners:
            return
        keys: list[str] = []
        for owner in owners:
            keys += [auth_cache.domain_owner_key(owner.name), owner_position_key(owner.name)]
        values = json.dumps([[str(o.account_id), "1" if o.holds else "0", str(o.position)] for o in owners])
        pipe.scripts.add(self._write_owners)  # type: ignore[arg-type]  # redis-py types the set as sync Scripts
        pipe.evalsha(self._write_owners.sha, len(keys), *keys, values)

    def _queue_watermark(self, pipe: aioredis.client.Pipeline, position: int, seen: int) -> int:
        """Queue the raise; returns the index of its result in the pipeline's results."""
        index = len(pipe.command_stack)
        pipe.scripts.add(self._raise_watermark)  # type: ignore[arg-type]  # redis-py types the set as sync Scripts
        pipe.evalsha(self._raise_watermark.sha, 2, auth_cache.WATERMARK_KEY, auth_cache.EPOCH_KEY, position, seen)
        return index

    def _queue_continuity(self, pipe: aioredis.client.Pipeline, previous: dict[TopicPartitionKey, int]) -> int | None:
        """Queue the check that the cache has seen `previous`; returns the index of its result, None if none."""
        if not previous:
            return None
        index = len(pipe.command_stack)
        pipe.scripts.add(self._check_continuity)  # type: ignore[arg-type]  # redis-py types the set as sync Scripts
        pipe.evalsha(self._check_continuity.sha, 2, self.offsets_key, auth_cache.EPOCH_KEY, *_offset_args(previous))
        return index

    def _queue_offsets(self, pipe: aioredis.client.Pipeline, offsets: dict[TopicPartitionKey, int]) -> None:
        if offsets:
            pipe.scripts.add(self._raise_offsets)  # type: ignore[arg-type]  # redis-py types the set as sync Scripts
            pipe.evalsha(self._raise_offsets.sha, 1, self.offsets_key, *_offset_args(offsets))

    @redis_errors
    async def write_batch(
        self,
        entries: Iterable[AuthEntry],
        offsets: dict[TopicPartitionKey, int],
        applied: Sequence[UUID],
        revocations: Sequence[tuple[str, UUID]],
        *,
        owners: Sequence[DomainOwner] = (),
        watermark: int = 0,
        changes: Sequence[tuple[str, UUID]] = (),
        previous_offsets: dict[TopicPartitionKey, int] | None = None,
    ) -> EpochDropped | None:
        """One MULTI/EXEC: first the continuity check (the cache's offsets against `previous_offsets`, what
        PostgreSQL recorded before the batch: if any is behind, Redis lost writes and the epoch is deleted), then
        entries and owners (if newer), the watermark (raised to `watermark`, never lowered), cache offsets,
        revocations and "credential changed" notices (after the entries: a relay that hears one re-reads the new
        entry), then the read-your-writes signal. Returns why the epoch was deleted, or None: `OFFSETS_BEHIND`,
        or `WATERMARK_WENT_BACK` when the watermark had gone back below one this instance saw (Redis restored
        from an older snapshot; the watermark is then not raised)."""
        index = None
        async with self.client.pipeline(transaction=True) as pipe:
            continuity = self._queue_continuity(pipe, previous_offsets or {})
            self._queue_entries(pipe, list(entries))
            self._queue_owners(pipe, owners)
            if watermark > 0:
                index = self._queue_watermark(pipe, watermark, self.highest_watermark)
            self._queue_offsets(pipe, offsets)
            self._queue_notices_in_one(pipe, revocations, changes)
            # Last: the API ends its wait on this, so relays must have heard of revocations and changes first.
            if applied:
                pipe.scripts.add(self._signal_applied)  # type: ignore[arg-type]  # redis-py types the set as sync Scripts
                pipe.evalsha(
                    self._signal_applied.sha, 0, auth_cache.APPLIED_KEY_PREFIX, self.applied_ttl,
                    auth_cache.APPLIED_CHANNEL, ",".join(map(str, applied)),
                )  # fmt: skip
            results = await pipe.execute()
        if index is not None:
            after = int(results[index])
            self.highest_watermark = max(self.highest_watermark, after)
            if after < 0:
                return EpochDropped.WATERMARK_WENT_BACK
        if continuity is not None and int(results[continuity]) > 0:
            return EpochDropped.OFFSETS_BEHIND
        return None

    @redis_errors
    async def load_entries(self, entries: Sequence[AuthEntry], chunk: int) -> None:
        """Write many entries (compare-on-position) in chunks: cache rebuilds."""
        for start in range(0, len(entries), chunk):
            async with self.client.pipeline(transaction=False) as pipe:
                self._queue_entries(pipe, entries[start : start + chunk])
                await pipe.execute()

    @redis_errors
    async def fail_closed(
        self,
        usernames: Iterable[str],
        revocations: Sequence[tuple[str, UUID]],
        changes: Sequence[tuple[str, UUID]] = (),
    ) -> None:
        """After a write Redis refused (out of memory, a key of the wrong type...): delete the epoch (the
        cache is incomplete: relays answer "try again later" and the projector rebuilds it) and the entries
        the write was for (a missing entry fails closed; one DEL, so all at once), and announce the revocations.
        DEL and PUBLISH are what a full Redis still accepts, but not inside MULTI (Redis refuses a transaction
        queued while out of memory): a plain pipeline."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.delete(auth_cache.EPOCH_KEY, *{auth_cache.auth_key(u) for u in usernames})
            self._queue_notices(pipe, revocations, changes)
            await pipe.execute()

    def _queue_notices_in_one(
        self,
        pipe: aioredis.client.Pipeline,
        revocations: Sequence[tuple[str, UUID]],
        changes: Sequence[tuple[str, UUID]],
    ) -> None:
        """The same messages as `_queue_notices`, in the same order on the same channel, from one script call
        (the batch's MULTI; `fail_closed` keeps plain PUBLISHes, which a Redis out of memory still accepts)."""
        messages = [auth_cache.revocation_message(username, credential_id) for username, credential_id in revocations]
        messages += [auth_cache.change_message(username, credential_id) for username, credential_id in changes]
        if messages:
            pipe.scripts.add(self._publish_all)  # type: ignore[arg-type]  # redis-py types the set as sync Scripts
            pipe.evalsha(self._publish_all.sha, 0, auth_cache.REVOCATIONS_CHANNEL, *messages)

    @staticmethod
    def _queue_notices(
        pipe: aioredis.client.Pipeline, revocations: Sequence[tuple[str, UUID]], changes: Sequence[tuple[str, UUID]]
    ) -> None:
        """PUBLISH the revocations, then the "credential changed" notices, on the one channel relays listen to."""
        for username, credential_id in revocations:
            pipe.publish(auth_cache.REVOCATIONS_CHANNEL, auth_cache.revocation_message(username, credential_id))
        for username, credential_id in changes:
            pipe.publish(auth_cache.REVOCATIONS_CHANNEL, auth_cache.change_message(username, credential_id))

    @redis_errors
    async def load_owners(self, owners: Sequence[DomainOwner], chunk: int) -> None:
        """Write domain owners (position-guarded, in the given order) in chunks: cache rebuilds."""
        for start in range(0, len(owners), chunk):
            async with self.client.pipeline(transaction=False) as pipe:
                self._queue_owners(pipe, owners[start : start + chunk])
                await pipe.execute()

    @redis_errors
    async def raise_watermark(self, position: int) -> None:
        """Raise the watermark to `position` (creating it when missing); never lowers it (rebuilds)."""
        async with self.client.pipeline(transaction=False) as pipe:
            self._queue_watermark(pipe, position, 0)
            (after,) = await pipe.execute()
        self.highest_watermark = max(self.highest_watermark, int(after))

    @redis_errors
    async def answers(self) -> bool:
        """Redis answers a PING (readiness)."""
        return bool(await self.client.ping())

    @redis_errors
    async def watermark(self) -> int | None:
        value = await self.client.get(auth_cache.WATERMARK_KEY)
        return None if value is None else int(value)

    @redis_errors
    async def raise_offsets(self, offsets: dict[TopicPartitionKey, int]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            self._queue_offsets(pipe, offsets)
            await pipe.execute()

    @redis_errors
    async def offsets(self) -> dict[TopicPartitionKey, int]:
        raw = await self.client.hgetall(self.offsets_key)
        result: dict[TopicPartitionKey, int] = {}
        for field, value in raw.items():
            topic, _, partition = (field.decode() if isinstance(field, bytes) else field).rpartition("/")
            result[(topic, int(partition))] = int(value)
        return result

    @redis_errors
    async def epoch(self) -> str | None:
        value = await self.client.get(auth_cache.EPOCH_KEY)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    @redis_errors
    async def begin_rebuild(self) -> str:
        token = uuid4().hex
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.sadd(REBUILDS_KEY, token)
            pipe.expire(REBUILDS_KEY, REBUILDS_TTL_SECONDS)
            await pipe.execute()
        return token

    @redis_errors
    async def set_epoch(self, epoch: str, rebuild: str) -> bool:
        keys = [REBUILDS_KEY, auth_cache.EPOCH_KEY]
        return bool(await self._set_epoch_if_rebuilt(keys=keys, args=[rebuild, epoch]))

    @redis_errors
    async def drop_epoch(self) -> None:
        """Mark the cache incomplete: relays treat it as unavailable until a rebuild sets a new epoch."""
        await self.client.delete(auth_cache.EPOCH_KEY)

    @redis_errors
    async def clear(self) -> int:
        """Delete every auth entry, domain owner (and its position), the epoch, the watermark and this group's
        cache offsets (a full rebuild starts here)."""
        removed = 0
        await self.client.delete(auth_cache.EPOCH_KEY, auth_cache.WATERMARK_KEY, self.offsets_key)
        for prefix in (auth_cache.KEY_PREFIX, auth_cache.DOMAIN_OWNER_PREFIX, OWNER_POSITION_PREFIX):
            batch: list[bytes | str] = []
            async for key in self.client.scan_iter(match=prefix + "*", count=5000):
                batch.append(key)
                if len(batch) >= 5000:
                    removed += await self.client.unlink(*batch)
                    batch = []
            if batch:
                removed += await self.client.unlink(*batch)
        return removed

    @redis_errors
    async def all_domain_owners(self) -> dict[str, str]:
        """Every domain-owner key and owner-position key as stored (key -> value): checksums, tests."""
        result: dict[str, str] = {}
        for prefix in (auth_cache.DOMAIN_OWNER_PREFIX, OWNER_POSITION_PREFIX):
            keys = [key async for key in self.client.scan_iter(match=prefix + "*", count=5000)]
            values = await self.client.mget(keys) if keys else []
            for key, value in zip(keys, values, strict=True):
                if value is not None:
                    name = key.decode() if isinstance(key, bytes) else key
                    result[name] = value.decode() if isinstance(value, bytes) else value
        return result

    @redis_errors
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

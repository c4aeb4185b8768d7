"""What the projector keeps in Redis beside the entries: revocations from the event stream, the watermark,
domain owners; and released domains in the read model (real broker, PostgreSQL and Redis)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from taifa_events import auth_cache
from taifa_projector.application.cache import REASON_EPOCH_MISSING, cache_gap, rebuild_cache

from tests.integration.projector.conftest import own_redis
from tests.integration.projector.projector_harness import ReadSide, eventually, holds, metric, produce, rebuild, running
from tests.integration.projector.test_projector_rebuild import store_events
from tests.unit.projector.projector_events import Domain


async def _watermark_is(side: ReadSide, position: int) -> bool:
    return await side.cache.watermark() == position


@contextlib.asynccontextmanager
async def revocations_heard(redis_url: str) -> AsyncIterator[list[auth_cache.Revocation]]:
    """Every revocation published while the block runs (subscribed before it starts)."""
    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(auth_cache.REVOCATIONS_CHANNEL)
    heard: list[auth_cache.Revocation] = []

    async def listen() -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                revocation = auth_cache.parse_revocation(message["data"])
                assert revocation is not None
                heard.append(revocation)

    task = asyncio.create_task(listen())
    try:
        yield heard
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pubsub.aclose()
        await client.aclose()


async def test_deactivation_and_recreation_in_one_batch_revoke_the_old_credential_only(isolated) -> None:
    settings = isolated.settings()
    d = Domain()
    old = d.created(1)
    new = d.created(3)
    # All three in one partition (same key) and produced before the projector starts: one batch.
    await produce(isolated.bootstrap, isolated.topic_names, [old, d.deactivated(old, 2), new])
    async with revocations_heard(isolated.redis_url) as heard, ReadSide(settings) as side:
        async with running(settings) as projector:
            await eventually(lambda: side.consumed(3), what="batch applied")
            await eventually(lambda: asyncio.sleep(0, bool(heard)), what="revocation heard")
            await eventually(holds(lambda: projector.totals.applied == 3), what="one batch of three")
        entry = await side.entry(d.username)
        assert entry is not None and entry.active and entry.credential_id == new.data.credential_id
        assert heard == [auth_cache.Revocation(d.username.lower(), str(old.data.credential_id))]


async def test_watermark_follows_the_highest_position_and_never_goes_back(isolated) -> None:
    settings = isolated.settings()
    first, second = Domain(), Domain()
    a = first.created(7)
    async with ReadSide(settings) as side, running(settings):
        # A fresh start: the cache is marked complete (epoch, watermark 0) before any event.
        await eventually(lambda: _watermark_is(side, 0), what="fresh cache marked complete")
        assert await side.cache.epoch() is not None
        await produce(isolated.bootstrap, isolated.topic_names, [first.registered(5), a, second.registered(9)])
        await eventually(lambda: side.consumed(3), what="applied")
        await eventually(lambda: _watermark_is(side, 9), what="watermark at the highest position")
        # A redelivery and an older event (another partition's late arrival) never lower it.
        await produce(isolated.bootstrap, isolated.topic_names, [a, second.created(8)])
        await eventually(lambda: side.consumed(5), what="older events applied")
        assert (await side.entry(second.username)).active
        assert await side.cache.watermark() == 9


async def test_after_a_flush_the_rebuild_restores_epoch_and_watermark_from_the_read_model(isolated) -> None:
    settings = isolated.settings()
    domains = [Domain() for _ in range(5)]
    created = [d.created(10 + i) for i, d in enumerate(domains)]
    async with ReadSide(settings) as side, running(settings) as projector:
        await produce(isolated.bootstrap, isolated.topic_names, [*created, domains[0].deactivated(created[0], 40)])
        await eventually(lambda: side.consumed(6), what="applied")
        await eventually(lambda: _watermark_is(side, 40), what="watermark")
        rebuilds = projector.guard.rebuilds
        await side.redis.flushdb()
        await eventually(lambda: _watermark_is(side, 40), what="watermark restored")
        assert projector.guard.rebuilds > rebuilds
        assert await side.cache.epoch() is not None
        assert not (await side.entry(domains[0].username)).active
        assert all([(await side.entry(d.username)).active for d in domains[1:]])
        # A cache from before the watermark existed (an upgrade): it gets one, relays need it.
        await side.redis.delete(auth_cache.WATERMARK_KEY)
        await eventually(lambda: _watermark_is(side, 40), what="watermark set on a cache without one")


async def _owner(side: ReadSide, name: str) -> str | None:
    value = await side.redis.get(auth_cache.domain_owner_key(name))
    return None if value is None else value.decode()


async def test_domain_owner_key_follows_verification_and_release_across_accounts(isolated) -> None:
    settings = isolated.settings()
    first, second, pending = Domain(), Domain(), Domain()
    second.name = pending.name = first.name.upper()  # names compare lowercase
    first_verified = first.verified(2)
    async with ReadSide(settings) as side, running(settings):
        await produce(isolated.bootstrap, isolated.topic_names, [first.registered(1), first_verified])
        await eventually(lambda: side.consumed(2), what="verified")
        assert await _owner(side, first.name) == str(first.account_id)
        # Another account registers the name and releases it while pending: the owner stays.
        await produce(isolated.bootstrap, isolated.topic_names, [pending.registered(3), pending.released(4, version=2)])
        await eventually(lambda: side.consumed(4), what="pending released")
        assert await _owner(side, first.name) == str(first.account_id)
        await produce(isolated.bootstrap, isolated.topic_names, [first.released(5)])
        await eventually(lambda: side.consumed(5), what="released")
        assert await _owner(side, first.name) is None
        row = await side.pool.fetchrow("SELECT * FROM rm_domains WHERE domain_id = $1", first.domain_id)
        assert row["status"] == "released" and row["released_at"] is not None and row["position"] == 5
        # A late copy of the old verification does not bring the name back; a new owner takes it.
        await produce(isolated.bootstrap, isolated.topic_names, [first_verified, second.registered(6)])
        await produce(isolated.bootstrap, isolated.topic_names, [second.verified(7)])
        await eventually(lambda: side.consumed(8), what="second owner")
        assert await _owner(side, first.name) == str(second.account_id)
        # A flush: the owner comes back from the read model with the entries.
        await side.redis.flushdb()
        await eventually(lambda: _owner(side, first.name), what="owner rebuilt")
        assert await _owner(side, first.name) == str(second.account_id)


async def test_rebuild_from_the_event_store_equals_live_with_releases_and_owners(isolated) -> None:
    settings = isolated.settings()
    first, second, other = Domain(), Domain(), Domain()
    second.name = first.name
    a = first.created(3)
    events = [
        first.registered(1), first.verified(2), a, other.registered(4), other.verified(5),
        first.deactivated(a, 6), first.released(7), second.registered(8), second.verified(9),
        other.verification_failed(10, version=3),
    ]  # fmt: skip
    await store_events(isolated.database_url, events)
    await produce(isolated.bootstrap, isolated.topic_names, events)
    async with ReadSide(settings) as side:
        async with running(settings):
            await eventually(lambda: side.consumed(len(events)), what="live applied")
        live = await side.checksums()
        assert await _owner(side, first.name) == str(second.account_id)
        assert await _owner(side, other.name) == str(other.account_id)
        await asyncio.to_thread(rebuild, isolated, "event-store")
        assert await side.checksums() == live
        assert await side.cache.watermark() == 10


async def test_a_batch_after_redis_went_back_in_time_drops_the_epoch_instead_of_raising_the_watermark(
    tmp_path, postgres_server, kafka_broker, migrated_template
) -> None:

    async with own_redis(tmp_path, postgres_server, kafka_broker, migrated_template) as (redis, isolated):
        # The guard checks once at the start and not again during the test: the batch alone must notice.
        settings = isolated.settings(projector_cache_check_seconds=3600)
        d, later = Domain(), Domain()
        a = d.created(1)
        regressions = metric("taifa_projector_cache_watermark_regressions_total")
        async with ReadSide(settings) as side, running(settings):
            await produce(isolated.bootstrap, isolated.topic_names, [a])
            await eventually(lambda: _watermark_is(side, 1), what="created")
            await side.redis.save()  # the old snapshot: the credential active, watermark 1
            await produce(isolated.bootstrap, isolated.topic_names, [d.deactivated(a, 2)])
            await eventually(lambda: _watermark_is(side, 2), what="revoked")
            await asyncio.to_thread(redis.restart)
            # Events keep flowing: the next batch must not make relays trust the stale snapshot again.
            await produce(isolated.bootstrap, isolated.topic_names, [later.created(3)])
            # The read model only: the batch's Redis write is the thing under test.
            await eventually(lambda: side.committed(3), what="next batch applied to the read model")
            await eventually(lambda: _epoch_gone(side), what="epoch deleted by the batch")
            assert await side.cache.watermark() == 1
            assert metric("taifa_projector_cache_watermark_regressions_total") > regressions


async def _epoch_gone(side: ReadSide) -> bool:
    return await side.cache.epoch() is None


class _RedisLostAfterTheEntries:
    """The real cache writer; Redis loses its data again (a restart without persistence, a failover to an empty
    replica) right after a rebuild loaded the entries."""

    def __init__(self, cache: object, redis: aioredis.Redis) -> None:
        self._cache, self._redis = cache, redis

    def __getattr__(self, name: str) -> object:
        return getattr(self._cache, name)

    async def load_owners(self, owners: object, chunk: int) -> None:
        await self._redis.flushdb()
        await self._cache.load_owners(owners, chunk)  # type: ignore[attr-defined]


async def test_a_cache_that_lost_its_data_during_the_rebuild_is_not_marked_complete(isolated) -> None:
    # The rebuild then wrote the offsets, the epoch and the watermark over an empty cache: complete to every check,
    # and every valid credential got 535 (a missing entry means no such credential) with nothing left to repair it.
    settings = isolated.settings()
    domains = [Domain() for _ in range(3)]
    async with ReadSide(settings) as side:
        async with running(settings) as projector:
            await produce(isolated.bootstrap, isolated.topic_names, [d.created(10 + n) for n, d in enumerate(domains)])
            await eventually(lambda: side.consumed(3), what="applied")
            await projector.applier.cache_settled()
        await side.redis.flushdb()
        loaded = await rebuild_cache(side.store, _RedisLostAfterTheEntries(side.cache, side.redis), 500, "test")
        partitions = list((await side.store.load_offsets()).keys())
        assert loaded == 0 and await side.cache.epoch() is None  # incomplete: relays answer 454, not 535
        assert await cache_gap(side.store, side.cache, partitions) == REASON_EPOCH_MISSING
        assert await rebuild_cache(side.store, side.cache, 500, REASON_EPOCH_MISSING) == 3  # the next check's
        assert await side.cache.epoch() is not None
        assert all([(await side.entry(d.username)).active for d in domains])

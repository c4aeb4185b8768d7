"""A batch's Redis write checks that the auth cache has seen every batch PostgreSQL committed before it, so a
Redis that lost writes is never built upon and trusted again (real broker, PostgreSQL and Redis).

Without the check, a batch applied before the guard's next look, by an instance that never saw the newer
watermark (just started, or one whose partitions only wrote older positions), raised the cache's offsets past the
loss: the guard then found nothing behind, and a lost tombstone stayed lost. Partition handovers must not trip
it: an instance giving partitions up lets its last Redis writes land first.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

from taifa_events import Envelope, encode, topics
from taifa_events.signing import signature_of
from taifa_projector import bootstrap
from taifa_projector.application.ports import Record

from tests.event_signing import signing_keyring
from tests.integration.projector.conftest import Isolated, own_redis
from tests.integration.projector.projector_harness import ReadSide, eventually, metric, produce, running
from tests.unit.projector.projector_events import Domain

OFFSETS_BEHIND = "taifa_projector_cache_offsets_behind_total"


async def _revoked_and_trusted(side: ReadSide, username: str) -> bool:
    entry = await side.entry(username)
    return entry is not None and not entry.active and await side.cache.epoch() is not None


async def test_a_batch_on_a_redis_that_lost_a_tombstone_drops_the_epoch_and_the_guard_repairs(
    tmp_path, postgres_server, kafka_broker, migrated_template
) -> None:
    # One partition per topic: the later credential lands behind the lost deactivation.
    stores = own_redis(tmp_path, postgres_server, kafka_broker, migrated_template, partitions=1)
    async with stores as (redis, isolated):
        settings = isolated.settings()
        d, later = Domain(), Domain()
        a = d.created(1)
        async with ReadSide(settings) as side, running(settings):
            await produce(isolated.bootstrap, isolated.topic_names, [a])
            await eventually(lambda: side.consumed(1), what="created")
            await side.redis.save()  # the old snapshot: the credential active, the cache's offset 1
            await produce(isolated.bootstrap, isolated.topic_names, [d.deactivated(a, 2)])
            await eventually(lambda: side.consumed(2), what="revoked")
        await asyncio.to_thread(redis.restart)
        behind = metric(OFFSETS_BEHIND)
        async with ReadSide(settings) as side:
            lost = await side.entry(d.username)
            assert lost is not None and lost.active and await side.cache.epoch() is not None, "the snapshot is back"
            # The next batch, from an instance that never saw watermark 2 (only the offsets can tell it), applied
            # by the instance's own parts before any guard check: the order the guard cannot cover.
            created = later.created(3)
            await produce(isolated.bootstrap, isolated.topic_names, [created])  # offset 2 of the one partition
            async with AsyncExitStack() as stack:
                parts = await bootstrap.consumer_parts(settings, stack)
                report = await parts.applier.process([_record(isolated, created, offset=2)])
                assert report.applied == 1
            assert await side.cache.epoch() is None, "a cache that lost a committed batch must not stay trusted"
            assert metric(OFFSETS_BEHIND) == behind + 1
            assert await side.cache.offsets() == {(isolated.topic_names[topics.SMTP_CREDENTIALS], 0): 3}
            # The guard rebuilds it from the read model: the tombstone is back before the cache is trusted again.
            async with running(settings):
                await eventually(lambda: _revoked_and_trusted(side, d.username), what="tombstone back, cache trusted")
                assert (await side.entry(later.username)).active  # type: ignore[union-attr]


def _record(isolated: Isolated, event: Envelope[Any], *, offset: int) -> Record:
    """The consumed record of `event` as the API's publisher signed it."""
    value = encode(event)
    return Record(
        isolated.topic_names[event.topic], 0, offset, event.key, value, (event.event_type, event.schema_version),
        signature_of(signing_keyring().headers(value)),
    )  # fmt: skip


async def test_partitions_moving_between_instances_under_load_never_trip_the_check(isolated) -> None:
    # A handover waits for the batch in flight for half the session timeout at most: room for a loaded machine.
    settings = isolated.settings(projector_session_timeout_ms=10_000)
    domains = [Domain() for _ in range(120)]
    created = [d.created(i + 1) for i, d in enumerate(domains)]
    behind = metric(OFFSETS_BEHIND)
    regressions = metric("taifa_projector_cache_watermark_regressions_total")

    async def paced(events) -> None:
        for start in range(0, len(events), 4):
            await produce(isolated.bootstrap, isolated.topic_names, events[start : start + 4])
            await asyncio.sleep(0.05)  # pacing the load, not synchronisation: batches keep flowing meanwhile

    async with ReadSide(settings) as side, running(settings) as first:
        flow = asyncio.create_task(paced(created))
        await eventually(lambda: side.consumed(8), what="the first instance is applying")
        async with running(settings) as second:  # a rebalance in, with batches in flight
            await eventually(lambda: asyncio.sleep(0, bool(second.assigned())), what="the second instance owns some")
            await eventually(lambda: side.consumed(60), what="both applying")
        # ... and one out, when the second leaves
        everything = 3 * len(isolated.topic_names)
        await eventually(lambda: asyncio.sleep(0, len(first.assigned()) == everything), what="all back with the first")
        await flow
        await eventually(lambda: side.consumed(len(created)), timeout=60, what="all applied")
        assert await side.cache.epoch() is not None
        for d in domains:
            entry = await side.entry(d.username)
            assert entry is not None and entry.active
    assert metric(OFFSETS_BEHIND) == behind
    assert metric("taifa_projector_cache_watermark_regressions_total") == regressions

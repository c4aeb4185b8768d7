"""The processed-event ids stay bounded: old ids are pruned, and a redelivery of a pruned event changes nothing."""

from __future__ import annotations

from taifa_projector.adapters.bookkeeping_sql import PRUNE_LOCK
from taifa_projector.application.pruning import ProcessedPruner

from tests.integration.projector.projector_harness import ReadSide, eventually, holds, produce, running
from tests.unit.projector.projector_events import Domain

KEEP = 10


def _events(domains: list[Domain]) -> list:
    events = []
    for i, d in enumerate(domains):
        created = d.created(10 * i + 2)
        events += [d.registered(10 * i + 1), created, d.deactivated(created, 10 * i + 3), d.created(10 * i + 4)]
    return events


async def test_old_processed_ids_are_pruned_and_their_redelivery_changes_nothing(isolated) -> None:
    settings = isolated.settings(
        projector_processed_keep_positions=KEEP, projector_prune_interval_seconds=0.05, projector_prune_chunk=3
    )
    domains = [Domain() for _ in range(6)]
    events = _events(domains)
    newest = max(e.position for e in events)
    kept = sum(1 for e in events if e.position >= newest - KEEP)
    await produce(isolated.bootstrap, isolated.topic_names, events)
    async with ReadSide(settings) as side:
        async with running(settings) as projector:
            await eventually(holds(lambda: projector.totals.applied == len(events)), what="all applied")
            await eventually(
                lambda: _equals(side.count("projector_processed_events"), kept), what="ids below the window pruned"
            )
            assert await side.count("projector_processed_events", f"position < {newest - KEEP}") == 0
            first = await side.checksums()
            # The whole stream again: the pruned ones are applied afresh, as no-ops; the kept ones are duplicates.
            await produce(isolated.bootstrap, isolated.topic_names, events)
            await eventually(lambda: side.consumed(2 * len(events)), what="redelivery consumed")
            await eventually(holds(lambda: projector.totals.duplicates == kept), what="kept ids counted as duplicates")
            assert await side.checksums() == first
        for d in domains:
            entry = await side.entry(d.username)
            assert entry is not None and entry.active and entry.position % 10 == 4


async def test_only_one_instance_prunes_at_a_time(isolated) -> None:
    settings = isolated.settings()
    domains = [Domain() for _ in range(3)]
    await produce(isolated.bootstrap, isolated.topic_names, _events(domains))
    async with ReadSide(settings) as side:
        async with running(settings) as projector:
            await eventually(holds(lambda: projector.totals.applied == 12), what="all applied")
        pruner = ProcessedPruner(side.store, keep_positions=1, interval=60, chunk=100)
        async with side.pool.acquire() as other, other.transaction():
            await other.fetchval("SELECT pg_advisory_xact_lock($1)", PRUNE_LOCK)
            assert await side.store.prune_processed(30, 100) is None
            assert await pruner.prune(24) == 0
        assert await side.count("projector_processed_events") == 12
        # One chunk per call when its time budget is spent; the rest goes on at the next call, not an interval later.
        hasty = ProcessedPruner(side.store, keep_positions=1, interval=60, chunk=1, budget=0)
        assert await hasty.prune(24) == 1
        assert await hasty.maybe_prune(24) == 1
        assert await pruner.prune(24) == 8  # the rest of positions 1-4, 11-14, 21, 22: below 24 - 1
        assert await side.count("projector_processed_events") == 2
        assert await pruner.maybe_prune(100) == 0  # not before its interval


async def _equals(count, expected: int) -> bool:
    return await count == expected

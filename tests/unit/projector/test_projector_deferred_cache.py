"""The consume loop's overlap (issue 18): a batch's Redis write queued behind the earlier ones while the next
batch goes to PostgreSQL (`BatchApplier.defer_cache`), and the stepwise decode. In memory, no I/O."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from taifa_events import Envelope
from taifa_events.signing import Keyring
from taifa_projector.application.batches import BatchApplier, CacheRefused
from taifa_projector.application.ports import EpochDropped

from tests.unit.projector.fakes import (
    TOPIC,
    InMemoryAuthCache,
    InMemoryDeadLetters,
    InMemoryReadModelStore,
    raw_record,
    record_of,
)
from tests.unit.projector.projector_events import Domain


class GatedCache(InMemoryAuthCache):
    """Each batch write waits for its gate; records the order in which writes started and ended."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: list[asyncio.Event] = []
        self.log: list[str] = []

    async def write_batch(self, entries: Any, offsets: Any, *args: Any, **kwargs: Any) -> EpochDropped | None:
        n = len(self.log) // 2
        self.log.append(f"start {n}")
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        result = await super().write_batch(entries, offsets, *args, **kwargs)
        self.log.append(f"end {n}")
        return result


def applier(store: InMemoryReadModelStore, cache: InMemoryAuthCache, *, defer: bool = True) -> BatchApplier:
    made = BatchApplier(
        store,
        cache,
        InMemoryDeadLetters(),
        keyring=Keyring({"unit": b"u" * 32}),
        max_attempts=2,
        retry_initial=0.001,
        retry_max=0.001,
    )
    made.defer_cache = defer
    return made


def records(events: list[Envelope[Any]], first_offset: int = 0) -> list[Any]:
    return [record_of(e, first_offset + i) for i, e in enumerate(events)]


async def until(condition: Any) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0)


async def test_a_deferred_batch_returns_after_its_commit_and_its_redis_write_lands_in_order_after_the_earlier_one() -> (
    None
):
    store, cache = InMemoryReadModelStore(), GatedCache()
    batches = applier(store, cache)
    first, second = Domain(), Domain()
    await batches.process(records([first.created(1)]))
    # Committed to the read model; the Redis write is queued, not done.
    assert store.recorded == {(TOPIC, 0): 1}
    assert first.username.lower() not in cache.entries
    await batches.process(records([second.created(2)], first_offset=1))
    assert len(store.state.credentials) == 2  # the second batch's commit did not wait for the first's Redis write
    await until(lambda: len(cache.gates) == 1)
    cache.gates[0].set()
    await until(lambda: len(cache.gates) == 2)  # the second write starts only after the first ended
    assert cache.log == ["start 0", "end 0", "start 1"]
    cache.gates[1].set()
    await batches.cache_settled()
    assert cache.log == ["start 0", "end 0", "start 1", "end 1"]
    assert {first.username.lower(), second.username.lower()} <= set(cache.entries)
    assert batches.cache_pending() is None


async def test_a_refused_deferred_write_stops_the_projector_at_cache_settled_and_the_next_write_never_runs() -> None:
    store, cache = InMemoryReadModelStore(), InMemoryAuthCache()
    batches = applier(store, cache)
    first, second = Domain(), Domain()
    cache.refuse_writes = 1
    cache.refuse_fail_closed = True
    await batches.process(records([first.created(1)]))
    await batches.process(records([second.created(2)], first_offset=1))
    with pytest.raises(CacheRefused):
        await batches.cache_settled()
    assert second.username.lower() not in cache.entries and cache.applied == []


async def test_without_defer_the_redis_write_is_done_when_the_batch_returns() -> None:
    store, cache = InMemoryReadModelStore(), InMemoryAuthCache()
    batches = applier(store, cache, defer=False)
    d = Domain()
    await batches.process(records([d.created(1)]))
    assert d.username.lower() in cache.entries and batches.cache_pending() is None


async def test_the_stepwise_decode_gives_the_batch_the_one_pass_decode_gives() -> None:
    batches = applier(InMemoryReadModelStore(), InMemoryAuthCache())
    d = Domain()
    created = d.created(3)
    mixed = [*records([d.registered(1), d.verified(2), created]), raw_record(b"not json", 3)]
    mixed += records([d.deactivated(created, 5)], first_offset=4)
    whole = batches.decode(mixed)
    for step in (1, 2, 100):
        stepwise = await batches.decode_stepwise(mixed, step=step)
        assert [(r.offset, e.event_id) for r, e in stepwise.events] == [(r.offset, e.event_id) for r, e in whole.events]
        assert [(r.offset, why) for r, why in stepwise.undecodable] == [(r.offset, why) for r, why in whole.undecodable]
        assert stepwise.unverified == whole.unverified and stepwise.next_offsets == whole.next_offsets


async def test_a_batch_on_a_cache_that_missed_a_committed_batch_drops_the_epoch_and_still_applies() -> None:
    store, cache = InMemoryReadModelStore(), InMemoryAuthCache()
    batches = applier(store, cache, defer=False)
    cache.current_epoch = "complete"
    first, second = Domain(), Domain()
    await batches.process(records([first.created(1)]))
    assert cache.current_epoch == "complete" and cache.seen_offsets == {(TOPIC, 0): 1}
    cache.seen_offsets = {}  # Redis lost that write (an older snapshot); the read model kept it
    await batches.process(records([second.created(2)], first_offset=1))
    assert cache.current_epoch is None  # relays refuse the cache until the guard has rebuilt it
    assert cache.entries[second.username.lower()].active and cache.seen_offsets == {(TOPIC, 0): 2}
    cache.current_epoch = "rebuilt"  # the guard's work
    await batches.process(records([Domain().created(3)], first_offset=2))
    assert cache.current_epoch == "rebuilt"  # the cache has seen every committed batch again: no alarm

"""Property (issue 15): any sequence of lifecycle commands, applied live through the batch path (split into
random batches, some redelivered), rebuilt from the event store and rebuilt from Kafka, gives the same read model
and auth cache. In-memory ports; tests/integration/projector has the same property on PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from taifa_events import Envelope
from taifa_projector.application.batches import BatchApplier
from taifa_projector.application.checksum import read_side_checksums
from taifa_projector.application.ports import LogChunk, Record
from taifa_projector.application.rebuild import rebuild_from_event_store, rebuild_from_kafka

from tests.unit.projector.fakes import (
    KEYRING,
    TOPIC,
    InMemoryAuthCache,
    InMemoryDeadLetters,
    InMemoryEventStore,
    InMemoryReadModelStore,
    record_of,
)
from tests.unit.projector.lifecycle_commands import command_lists, events_of


class _Log:
    """`ports.EventLog` over a list of records (one partition from offset 0)."""

    def __init__(self, records: Sequence[Record]) -> None:
        self.records = list(records)

    async def log_starts(self, topic_names: Sequence[str]) -> dict[tuple[str, int], int]:
        return {}

    async def read_to_end(self, topic_names: Sequence[str]) -> AsyncIterator[LogChunk]:
        end = {(TOPIC, 0): len(self.records)}
        yield self.records, dict(end), end


async def _live(events: list[Envelope[Any]], cuts: list[int], redeliver: list[bool]):
    store, cache = InMemoryReadModelStore(), InMemoryAuthCache()
    applier = BatchApplier(
        store, cache, InMemoryDeadLetters(), keyring=KEYRING, max_attempts=2, retry_initial=0, retry_max=0
    )
    records = [record_of(e, offset) for offset, e in enumerate(events)]
    bounds = sorted({0, len(records), *(c % (len(records) + 1) for c in cuts)})
    previous: list[Record] = []
    for (start, end), again in zip(itertools.pairwise(bounds), redeliver + [False] * len(bounds), strict=False):
        batch = records[start:end]
        await applier.process(batch)
        if again:  # the batch (and the one before) delivered once more, as after a crash before the Kafka commit
            await applier.process(previous + batch)
        previous = batch
    return store, cache, records


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command_lists, st.lists(st.integers(0, 40), max_size=6), st.lists(st.booleans(), max_size=6))
def test_any_lifecycle_sequence_gives_the_same_read_side_live_and_rebuilt(commands, cuts, redeliver) -> None:
    asyncio.run(_same_read_side(events_of(commands), cuts, redeliver))


async def _same_read_side(events: list[Envelope[Any]], cuts: list[int], redeliver: list[bool]) -> None:
    if not events:
        return
    live_store, live_cache, records = await _live(events, cuts, redeliver)
    live = await read_side_checksums(live_store, live_cache)

    store, cache = InMemoryReadModelStore(), InMemoryAuthCache()
    await rebuild_from_event_store(InMemoryEventStore(events), store, cache, chunk=3)
    assert await read_side_checksums(store, cache) == live
    assert cache.entries == live_cache.entries

    store, cache = InMemoryReadModelStore(), InMemoryAuthCache()
    await rebuild_from_kafka(store, cache, _Log(records), [TOPIC], keyring=KEYRING, chunk=3)
    assert await read_side_checksums(store, cache) == live

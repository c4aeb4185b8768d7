"""The rebuild's write phase (issue 18): the auth cache is loaded once the read model's rows are in the store
(`replace_all`'s `rows_sent`), beside the store's own remaining work, never interleaved with the rows' encoding;
a store that fails before that point does not leave the rebuild waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from uuid import UUID

import pytest
from taifa_projector.application.ports import StoreUnavailable
from taifa_projector.application.rebuild import rebuild_from_event_store
from taifa_projector.domain.fold import ReadSideFold
from taifa_projector.domain.log_positions import TopicPartitionKey

from tests.unit.projector.fakes import InMemoryAuthCache, InMemoryEventStore, InMemoryReadModelStore
from tests.unit.projector.projector_events import scenario


class _SlowStore(InMemoryReadModelStore):
    """Takes a few turns of the loop before the rows are in (as COPY does), noting what the cache held by then."""

    def __init__(self, cache: InMemoryAuthCache, *, fail: bool = False) -> None:
        super().__init__()
        self.cache = cache
        self.fail = fail
        self.cache_entries_while_sending: list[int] = []
        self.rows_sent_called = False

    async def replace_all(
        self,
        fold: ReadSideFold,
        processed: Sequence[tuple[UUID, int]],
        offsets: dict[TopicPartitionKey, int] | None,
        *,
        offsets_at_least: dict[TopicPartitionKey, int] | None = None,
        rows_sent: Callable[[], None] | None = None,
    ) -> None:
        for _ in range(20):
            await asyncio.sleep(0)
            self.cache_entries_while_sending.append(len(self.cache.entries) + len(self.cache.owners))
        if self.fail:
            raise StoreUnavailable("postgres", "ConnectionResetError")

        def sent() -> None:
            self.rows_sent_called = True
            if rows_sent is not None:
                rows_sent()

        await super().replace_all(fold, processed, offsets, offsets_at_least=offsets_at_least, rows_sent=sent)


async def test_the_cache_is_loaded_after_the_rows_are_sent_and_equals_the_plain_rebuild() -> None:
    events = scenario(300)
    cache = InMemoryAuthCache()
    store = _SlowStore(cache)
    summary = await rebuild_from_event_store(InMemoryEventStore(events), store, cache, chunk=7)
    assert store.rows_sent_called
    assert set(store.cache_entries_while_sending) == {0}  # nothing loaded while the rows were being sent
    assert summary.auth_entries > 0 and len(cache.entries) == summary.auth_entries
    plain_cache = InMemoryAuthCache()
    await rebuild_from_event_store(InMemoryEventStore(events), InMemoryReadModelStore(), plain_cache, chunk=7)
    assert cache.entries == plain_cache.entries and cache.owners == plain_cache.owners
    assert cache.current_epoch is not None and cache.current_watermark == plain_cache.current_watermark


async def test_a_store_failing_before_the_rows_are_in_fails_the_rebuild_without_a_hang() -> None:
    cache = InMemoryAuthCache()
    store = _SlowStore(cache, fail=True)
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(rebuild_from_event_store(InMemoryEventStore(scenario(100)), store, cache), 30)
    # The read side is unchanged (here: empty), and the cache is put back from it, complete: none of the fold's
    # entries, which the failed write never made the read side's.
    assert not cache.entries and cache.current_epoch is not None

"""The cache guard on in-memory ports: a flushed cache, one behind the read model, or one without a
watermark is rebuilt from the read model (quarantine honoured) and marked complete last (no I/O)."""

from __future__ import annotations

import asyncio

from taifa_projector.application.cache import (
    REASON_BEHIND,
    REASON_EPOCH_MISSING,
    REASON_WATERMARK_MISSING,
    CacheGuard,
    cache_gap,
)

from tests.unit.projector.fakes import TOPIC, InMemoryAuthCache, InMemoryReadModelStore
from tests.unit.projector.projector_events import Domain

PARTITION = (TOPIC, 0)


async def read_side() -> tuple[InMemoryReadModelStore, InMemoryAuthCache, Domain, Domain]:
    """A read model with two credentials (one quarantined after a refused deactivation) and a verified domain."""
    store = InMemoryReadModelStore()
    kept, revoked = Domain(), Domain()
    revoked_credential = revoked.created(4)
    await store.apply_batch([kept.registered(1), kept.verified(2), kept.created(3), revoked_credential], {PARTITION: 4})
    await store.quarantine({revoked_credential.data.credential_id: 5})
    return store, InMemoryAuthCache(), kept, revoked


async def guard_once(store: InMemoryReadModelStore, cache: InMemoryAuthCache) -> CacheGuard:
    guard = CacheGuard(store, cache, interval=0.0, chunk=2)
    await guard.maybe_check([PARTITION])
    if guard._task is not None:
        await asyncio.wait_for(guard._task, 5)
    return guard


async def test_a_cache_without_an_epoch_is_rebuilt_from_the_read_model_with_quarantined_credentials_revoked() -> None:
    store, cache, kept, revoked = await read_side()
    assert await cache_gap(store, cache, [PARTITION]) == REASON_EPOCH_MISSING
    guard = await guard_once(store, cache)
    assert guard.rebuilds == 1
    assert cache.entries[kept.username.lower()].active
    assert not cache.entries[revoked.username.lower()].active  # the quarantine survives the rebuild
    assert cache.owners[kept.name] == (kept.account_id, 2)
    assert cache.current_epoch is not None and cache.current_watermark == 4
    assert cache.seen_offsets == {PARTITION: 4}
    assert await cache_gap(store, cache, [PARTITION]) is None


async def test_a_cache_behind_the_read_model_loses_its_epoch_until_it_is_repaired() -> None:
    store, cache, _, _ = await read_side()
    await guard_once(store, cache)
    cache.seen_offsets = {PARTITION: 1}  # Redis restarted from an older snapshot
    assert await cache_gap(store, cache, [PARTITION]) == REASON_BEHIND
    epochs: list[str | None] = []
    load_entries = cache.load_entries

    async def watching(entries, chunk):  # type: ignore[no-untyped-def]
        epochs.append(cache.current_epoch)
        await load_entries(entries, chunk)

    cache.load_entries = watching  # type: ignore[method-assign]
    await guard_once(store, cache)
    assert epochs == [None]  # relays refused the stale cache while it was being repaired
    assert cache.current_epoch is not None and cache.seen_offsets == {PARTITION: 4}


async def test_a_cache_without_a_watermark_is_given_the_read_models_highest_position() -> None:
    store, cache, _, _ = await read_side()
    await guard_once(store, cache)
    cache.current_watermark = None
    assert await cache_gap(store, cache, [PARTITION]) == REASON_WATERMARK_MISSING
    await guard_once(store, cache)
    assert cache.current_watermark == 4


async def test_a_complete_cache_is_left_alone() -> None:
    store, cache, _, _ = await read_side()
    await guard_once(store, cache)
    guard = await guard_once(store, cache)
    assert guard.rebuilds == 0

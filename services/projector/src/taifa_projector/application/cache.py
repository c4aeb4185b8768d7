"""Keep the Redis auth cache complete: detect a lost cache and rebuild it from the read model.

The cache is complete while `EPOCH_KEY` exists and, for every partition this instance owns, the
offsets the cache has seen are not behind the offsets PostgreSQL recorded. A flush removes the epoch;
a restart from an old snapshot (or a crash between the two commits) leaves the cache behind. Either
way the entries are rewritten from `projector_auth_entries` (credentials quarantined after a refused
deactivation as tombstones) and the domain owners from `rm_domains`, with compare-on-position writes, so
the live stream can keep writing meanwhile: whichever write is newer wins. Then the offsets, the epoch,
and last the watermark (raised to the read model's highest applied position, never lowered: a live batch
may have raised it past the snapshot meanwhile), so a relay that sees the watermark sees a complete cache.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from uuid import uuid4

from taifa_projector import metrics
from taifa_projector.application.ports import AuthCacheWriter, EpochDropped, ReadModelStore
from taifa_projector.domain.log_positions import TopicPartitionKey

log = logging.getLogger(__name__)

REASON_EPOCH_MISSING = "epoch_missing"
REASON_BEHIND = "cache_behind_read_model"
# A cache written before the watermark existed (an upgrade), or whose watermark was deleted: relays do not
# trust a cache without one, so it is set from the read model (nothing else is wrong with the entries).
REASON_WATERMARK_MISSING = "watermark_missing"
# A rebuild that cleared the cache, then failed to swap its read side in: the cache is put back from the unchanged one.
REASON_REBUILD_FAILED = "rebuild_failed"


async def cache_gap(
    store: ReadModelStore, cache: AuthCacheWriter, partitions: Iterable[TopicPartitionKey]
) -> str | None:
    """Why the cache is incomplete for `partitions`, or None if it is complete."""
    if await cache.epoch() is None:
        return REASON_EPOCH_MISSING
    if await cache.watermark() is None:
        return REASON_WATERMARK_MISSING
    recorded = await store.load_offsets(list(partitions))
    seen = await cache.offsets()
    if any(seen.get(tp, -1) < offset for tp, offset in recorded.items()):
        return REASON_BEHIND
    return None


def epoch_dropped(reason: EpochDropped, highest_watermark: int) -> None:
    """A batch's Redis write found the cache untrustworthy and deleted its epoch: count it and say why."""
    if reason is EpochDropped.WATERMARK_WENT_BACK:
        metrics.CACHE_REGRESSIONS.inc()
        log.error(
            "the auth cache's watermark went back below %d (Redis restored from an older snapshot?): "
            "epoch deleted, relays refuse it until it is rebuilt",
            highest_watermark,
        )
    else:
        metrics.CACHE_OFFSETS_BEHIND.inc()
        log.error(
            "the auth cache had not seen every batch the read model committed before this one (Redis lost writes, "
            "an instance stopped between its two commits or gave its partitions up before its last write landed, "
            "or a commit's answer was lost): epoch deleted, relays refuse it until it is rebuilt"
        )


async def mark_complete(
    cache: AuthCacheWriter, rebuild: str, offsets: dict[TopicPartitionKey, int], watermark: int
) -> bool:
    """After a rebuild (`rebuild`: its `begin_rebuild` token) loaded the cache: its offsets, a new epoch, then the
    watermark. False, and no epoch, when Redis lost its data since the rebuild began (the entries went with it)."""
    await cache.raise_offsets(offsets)
    if not await cache.set_epoch(uuid4().hex, rebuild):
        return False
    await cache.raise_watermark(watermark)
    return True


async def rebuild_cache(store: ReadModelStore, cache: AuthCacheWriter, chunk: int, reason: str) -> int:
    """Rewrite every entry from the read model (newer live writes win), then mark the cache complete."""
    started = time.monotonic()
    if reason == REASON_BEHIND:
        # Stale entries (an old snapshot may hold credentials revoked since): unavailable until repaired.
        await cache.drop_epoch()
    rebuild = await cache.begin_rebuild()
    snapshot = await store.auth_snapshot()
    await cache.load_entries(snapshot.entries, chunk)
    await cache.load_owners(snapshot.owners, chunk)
    if not await mark_complete(cache, rebuild, snapshot.offsets, snapshot.highest_position):
        # Redis lost its data again while this ran: the entries loaded before went with it. Left incomplete (no
        # epoch: relays answer 454, never a false 535); the next check rebuilds it.
        log.error("Redis lost data during the auth cache rebuild (%s): left incomplete, to be rebuilt", reason)
        return 0
    metrics.CACHE_REBUILDS.labels(reason).inc()
    log.warning(
        "auth cache rebuilt from the read model (%s): %d entries, %d domain owners, watermark %d in %.2fs",
        reason,
        len(snapshot.entries),
        len(snapshot.owners),
        snapshot.highest_position,
        time.monotonic() - started,
    )
    return len(snapshot.entries)


class CacheGuard:
    """Checks the cache every `interval` seconds and rebuilds it in the background when it is incomplete."""

    def __init__(self, store: ReadModelStore, cache: AuthCacheWriter, *, interval: float, chunk: int) -> None:
        self.store = store
        self.cache = cache
        self.interval = interval
        self.chunk = chunk
        self._last_check = float("-inf")
        self._task: asyncio.Task[int] | None = None
        self.rebuilds = 0

    @property
    def rebuilding(self) -> bool:
        return self._task is not None and not self._task.done()

    def request_check(self) -> None:
        """Check at the next opportunity (after a rebalance, after start)."""
        self._last_check = float("-inf")

    def due(self) -> bool:
        """Whether the next `maybe_check` checks (the caller lets its pending cache writes land first)."""
        return not self.rebuilding and time.monotonic() - self._last_check >= self.interval

    async def maybe_check(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """Between batches: check if due, and start a rebuild if the cache is incomplete."""
        self._reap()
        if self.rebuilding or time.monotonic() - self._last_check < self.interval:
            return
        self._last_check = time.monotonic()
        try:
            reason = await cache_gap(self.store, self.cache, partitions)
        except Exception as exc:  # noqa: BLE001 - a store being down is handled by the batch retries
            log.warning("cache check failed (%s); will retry", type(exc).__name__)
            return
        if reason is not None:
            self.rebuilds += 1
            self._task = asyncio.create_task(rebuild_cache(self.store, self.cache, self.chunk, reason))

    def _reap(self) -> None:
        if self._task is not None and self._task.done():
            if not self._task.cancelled() and self._task.exception() is not None:
                metrics.CACHE_REBUILD_FAILURES.inc()
                log.error("cache rebuild failed (%s); will retry", type(self._task.exception()).__name__)
            self._task = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

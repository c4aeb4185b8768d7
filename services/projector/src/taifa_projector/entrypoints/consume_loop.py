"""The consume loop of one projector instance: poll a batch, apply it, commit, check between batches.

`run(settings, stop)` is the async entry (`taifa-projector run` calls it; tests may run it in-process).
One loop per instance: poll a batch, apply it (PostgreSQL, then Redis), commit offsets to Kafka,
check the auth cache between batches. Partitions are shared with other instances by the group. The
parts come from `bootstrap.consumer_parts`, and one `AsyncExitStack` closes them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from taifa_runtime.health import HealthServer

from taifa_projector import bootstrap, heap, metrics
from taifa_projector.application.batches import BatchReport, DecodedBatch
from taifa_projector.application.retry import retry_transient
from taifa_projector.domain.log_positions import TopicPartitionKey
from taifa_projector.entrypoints.usage_loop import UsageWorker
from taifa_projector.settings import Settings

if TYPE_CHECKING:
    from aiokafka import TopicPartition

log = logging.getLogger(__name__)


class Projector:
    """One projector instance; `start()`, then `consume(stop)`, then `close()`."""

    def __init__(self, settings: Settings, *, health: bool = True) -> None:
        self.settings = settings
        self.with_health = health
        self.batch_seconds: deque[float] = deque(maxlen=100_000)
        self.totals = BatchReport()
        self._started = False
        self._following: asyncio.Task[None] | None = None  # the Kafka commit of the last batch, if still out
        self._in_flight: asyncio.Task[BatchReport] | None = None  # the batch being applied, if any
        self._stack = AsyncExitStack()

    async def start(self) -> None:
        s = self.settings
        parts = await bootstrap.consumer_parts(s, self._stack, log_starts=self._log_starts)
        self.store, self.cache = parts.store, parts.cache
        self.read_side, self.guard = parts.read_side, parts.guard
        self.pruner, self.applier = parts.pruner, parts.applier
        self.log_gaps, self.listener, self.consumer = parts.log_gaps, parts.listener, parts.consumer
        self.group = parts.group
        # Each batch's Redis write overlaps the next batch's PostgreSQL transaction (in order; see `_finish`).
        self.applier.defer_cache = True
        self.listener.before_revoke = self._let_writes_land
        await self._hold_read_side()
        await self.consumer.start()
        if self.with_health:
            health = HealthServer(s.projector_health_host, s.projector_health_port, self.ready)
            await health.start()
            self._stack.push_async_callback(health.stop)
        self._started = True
        heap.freeze_long_lived()
        log.info("projector started: group %s, topics %s", s.projector_group_id, ",".join(s.projector_topics))

    async def _hold_read_side(self) -> None:
        """Hold the read side shared (a rebuild holds it exclusively): wait while a rebuild runs."""

        async def hold() -> None:
            if not await self.read_side.try_acquire():
                log.warning("a rebuild of the read side is running; waiting for it to finish")
                await self.read_side.acquire()

        await retry_transient(
            hold,
            initial=self.settings.projector_retry_initial_seconds,
            maximum=self.settings.projector_retry_max_seconds,
        )

    async def _log_starts(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Where each partition's log starts (the broker's ListOffsets "earliest"; tests simulate retention here)."""
        starts: dict[TopicPartition, int] = await self.consumer.beginning_offsets(partitions)
        return starts

    async def ready(self) -> bool:
        """Ready when consuming, no partition stopped at a log gap, and both stores answer."""
        if not self._started or self.log_gaps:
            return False
        return await self.store.answers() and await self.cache.answers()

    def assigned(self) -> list[TopicPartitionKey]:
        return self.group.assigned()

    async def consume(self, stop: asyncio.Event) -> None:
        """Poll, apply and commit until `stop` is set.

        Batches are applied strictly one after another; the next batch is polled and decoded while the
        previous one waits on PostgreSQL and Redis (decoding has no effects).
        """
        try:
            while not stop.is_set():
                if self._in_flight is None:
                    await self._between_batches()
                rebalances = self.group.rebalances()
                records = await self.group.poll(
                    timeout_ms=self.settings.projector_poll_timeout_ms, max_records=self.settings.projector_batch_size
                )
                decoded = await self.applier.decode_stepwise(records) if records else None
                if self._in_flight is not None:
                    await self._finish_in_flight()
                    await self._between_batches()
                if decoded is not None and self.group.rebalances() != rebalances:
                    # Polled across a rebalance: some partitions may belong to another instance now, which must
                    # not see this instance's writes for them, and a partition just given may have been read from
                    # Kafka's committed offset before the listener sought PostgreSQL's. Dropped, and every
                    # partition ours is read again from PostgreSQL's offsets.
                    log.info("dropping a batch polled across a rebalance; reading again from the recorded offsets")
                    decoded = None
                    await self.group.rewind()
                if decoded is not None:
                    self._in_flight = asyncio.create_task(self._apply(decoded))
        finally:
            try:
                if self._in_flight is not None:
                    await self._finish_in_flight()
                await self._followed()
            finally:
                await self.applier.cache_settled()

    async def _finish_in_flight(self) -> None:
        """Finish the batch in flight; it counts as in flight until then (`_let_writes_land` waits for it)."""
        assert self._in_flight is not None
        try:
            await self._finish(self._in_flight)
        finally:
            self._in_flight = None

    async def _let_writes_land(self) -> None:
        """Before the group takes partitions away (a rebalance): the batch being applied and every Redis write
        queued behind it finish first. The next owner's first batch checks that the cache has seen what
        PostgreSQL recorded (`write_batch`'s continuity check); a write of ours still on its way would look like
        lost writes, and the epoch would be dropped for nothing. Failures are the consume loop's to raise.

        Bounded by half the session timeout (the group's rebalance timeout): a store that is down must not stall
        every member's rebalance. Past it, the next owner may find the cache behind and have it rebuilt: fail
        closed, as after a crash."""
        deadline = asyncio.get_running_loop().time() + self.settings.projector_session_timeout_ms / 2000
        if self._in_flight is not None:
            await asyncio.wait({self._in_flight}, timeout=max(0.0, deadline - asyncio.get_running_loop().time()))
        pending = self.applier.cache_pending()
        if pending is not None:
            await asyncio.wait({pending}, timeout=max(0.0, deadline - asyncio.get_running_loop().time()))

    async def _between_batches(self) -> None:
        """With no batch in flight: hold the read side again if its connection was lost (a database
        restart), notice a partition positioned past the end of a new log, check the auth cache, prune old
        processed-event ids (each at its own interval)."""
        if not self.read_side.held:
            await self._hold_read_side()
        await self.listener.past_end()
        if self.guard.due():
            # The check compares the cache's offsets with PostgreSQL's: the last batch's Redis write must be in.
            await self.applier.cache_settled()
        await self.guard.maybe_check(self.assigned())
        await self.pruner.maybe_prune(self.totals.highest_position)

    async def _apply(self, decoded: DecodedBatch) -> BatchReport:
        started = time.perf_counter()
        report = await self.applier.apply(decoded)
        elapsed = time.perf_counter() - started
        metrics.BATCH_SECONDS.observe(elapsed)
        self.batch_seconds.append(elapsed)
        return report

    async def _finish(self, in_flight: asyncio.Task[BatchReport]) -> None:
        report = await in_flight
        self._add_to_totals(report)
        # Kafka's offsets only follow PostgreSQL's and Redis's (for lag tools): the batch's Redis write and then the
        # commit's round trip run while the next batch is applied, one at a time and in order (the previous one
        # is awaited first, so an error of the Redis write, `CacheRefused`, stops the loop here).
        await self._followed()
        self._following = asyncio.create_task(self._commit(report.next_offsets, self.applier.cache_pending()))

    async def _followed(self) -> None:
        """Wait for the Kafka commit still out, if any."""
        if self._following is not None:
            following, self._following = self._following, None
            await following

    def _add_to_totals(self, report: BatchReport) -> None:
        self.totals.applied += report.applied
        self.totals.duplicates += report.duplicates
        self.totals.dead_lettered += report.dead_lettered
        self.totals.highest_position = max(self.totals.highest_position, report.highest_position)
        self.totals.next_offsets.update(report.next_offsets)

    async def _commit(self, offsets: dict[TopicPartitionKey, int], cache_write: Awaitable[None] | None) -> None:
        """Once the batch's Redis write is done, follow PostgreSQL's offsets in Kafka (for lag tools), and show
        how far each partition is behind."""
        if cache_write is not None:
            await cache_write
        for (topic, partition), behind in (await self.group.commit(offsets)).items():
            metrics.LAG.labels(topic, str(partition)).set(behind)

    async def close(self) -> None:
        self._started = False
        if hasattr(self, "log_gaps"):
            self.log_gaps.released(list(self.log_gaps.gaps))  # it owns no partition any more
        await self._stack.aclose()


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run one projector instance until `stop` is set (or forever)."""
    stop = stop or asyncio.Event()
    projector = Projector(settings)
    usage = UsageWorker(settings) if settings.projector_usage_enabled else None
    try:
        await projector.start()
        if usage is None:
            await projector.consume(stop)
        else:
            await usage.start()
            await asyncio.gather(projector.consume(stop), usage.run(stop))
    finally:
        if usage is not None:
            await usage.close()
        await projector.close()

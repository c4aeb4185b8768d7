"""Drop and rebuild the read models and the auth cache from the event store or from Kafka offset 0.

Events are folded in memory with the same rules as the live consumer, then written in one
PostgreSQL transaction (COPY into new tables swapped in at the end, so readers never wait for the
load) and one pass over Redis. Run it with the projectors stopped: a live instance writing meanwhile
would be overwritten by the swap (the CLI enforces it with `adapters.read_side_lock`).

- from the event store: the group's offsets are raised to each partition's end as it was before the
  event store was read (`log_ends_before`), so a projector started afterwards reads only what was published
  since. Every record below those ends is in the event store the rebuild replays, or is one the event
  store no longer holds: after PostgreSQL was restored to an earlier point, Kafka still has the events
  written after the backup, and replaying them would bring back what the restore removed (a credential
  the API no longer knows, logging in at the relays). Raising the offsets also moves them past a
  retention gap (`domain.log_positions`). Without Kafka the offsets are kept as they are;
- from Kafka: refused unless every partition still starts at offset 0 (else the log no longer holds
  the whole history); the group's offsets become the end offsets the rebuild read up to. Every record's
  signature is verified as the live consumer does: one that does not verify (unsigned, unknown key,
  wrong tag) is skipped and counted in `RebuildSummary.unverified`, never applied (the live
  projector dead-lettered it). The event store needs no signature: PostgreSQL is the log of record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from taifa_events import InvalidEvent, decode
from taifa_events.audit import AuditRow, audit_row
from taifa_events.signing import REASON_UNKNOWN_KEY, Keyring, SignatureRefused

from taifa_projector import heap, metrics
from taifa_projector.application.cache import REASON_REBUILD_FAILED, mark_complete, rebuild_cache
from taifa_projector.application.ports import AuthCacheWriter, EventLog, EventStoreReader, ReadModelStore
from taifa_projector.domain.fold import ReadSideFold, owners_of
from taifa_projector.domain.log_positions import LogNotFromZero, TopicPartitionKey
from taifa_projector.domain.model import quarantined

log = logging.getLogger(__name__)

SOURCE_EVENT_STORE = "event-store"
SOURCE_KAFKA = "kafka"
EVENT_STORE_CHUNK = 20_000

# Progress callback: (phase, done, total).
Progress = Callable[[str, int, int], None]


class KafkaRebuildRefused(Exception):
    """The Kafka log would give a read side behind the live one (records that do not verify, or a log that ends
    below the live cache's watermark): refused before anything is written."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return (
            f"{self.reason}; nothing was changed: rebuild with `--from event-store` (the log of record), or pass "
            "--allow-loss to swap in what the log gives anyway"
        )


class CacheLostDuringRebuild(Exception):
    """Redis lost its data while the rebuild loaded it: the read models are rebuilt, the auth cache is not."""

    def __str__(self) -> str:
        return (
            "Redis lost its data during the rebuild: the read models are rebuilt, the auth cache is left incomplete "
            "(relays answer 454); a projector started now rebuilds it from the read model, or run the rebuild again"
        )


def _no_progress(_phase: str, _done: int, _total: int) -> None:
    return None


@dataclass
class RebuildSummary:
    source: str
    events: int = 0
    invalid: int = 0
    unverified: int = 0  # Kafka records whose signature did not verify (skipped)
    credentials: int = 0
    domains: int = 0
    auth_entries: int = 0
    parked: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)


class _Folder:
    """Folds decoded events into a ReadSideFold and remembers every event id once."""

    def __init__(self) -> None:
        # Only the end state is written: cache entries are built once, from the final rows (`settle_auth`).
        self.fold = ReadSideFold(deferred_auth=True)
        self.processed: dict[UUID, int] = {}
        self.invalid = 0
        self.audit: list[AuditRow] = []  # the audit feed rows of the page being folded (staged after each page)

    def add_raw(self, raw: bytes | str | dict[str, Any] | None, declared: tuple[str, int] | None = None) -> None:
        try:
            if raw is None:
                raise InvalidEvent("no value")
            event = decode(raw, declared=declared)
        except InvalidEvent:
            # Undecodable records went to the dead-letter topic when they were live; they change nothing here.
            self.invalid += 1
            return
        if event.event_id in self.processed:
            return
        self.processed[event.event_id] = event.position
        self.fold.apply(event)
        row = audit_row(event)
        if row is not None:
            self.audit.append(row)

    async def stage_audit(self, store: ReadModelStore) -> None:
        """Hand the page's audit rows to the store (never the whole feed in memory)."""
        rows, self.audit = self.audit, []
        await store.stage_audit(rows)


async def _write(
    store: ReadModelStore,
    cache: AuthCacheWriter,
    folder: _Folder,
    offsets: dict[TopicPartitionKey, int] | None,
    summary: RebuildSummary,
    chunk: int,
    progress: Progress,
    offsets_at_least: dict[TopicPartitionKey, int] | None = None,
) -> RebuildSummary:
    fold = folder.fold
    fold.settle_auth()
    # Credentials whose deactivation the live projector could not apply stay revoked (quarantine).
    entries = quarantined(fold.auth.values(), await store.quarantined_credentials())
    owners = owners_of(fold.domains.values())

    # This process's CPU is what both writes wait for: the rows go to PostgreSQL first (their encoding is ours), then
    # the cache is loaded while PostgreSQL builds the indexes and swaps (its own work). Both at once, interleaved,
    # the indexes started later: a 1 M-event rebuild's write phase took 19.7-20.1 s against 16.9-18.8 s (issue 18).
    rows_sent = asyncio.Event()

    async def write_postgres() -> None:
        started = time.monotonic()
        progress("read models", 0, 1)
        try:
            await store.replace_all(
                fold, list(folder.processed.items()), offsets, offsets_at_least=offsets_at_least,
                rows_sent=rows_sent.set,
            )  # fmt: skip
        finally:
            rows_sent.set()  # a failed write: the cache's load goes on as before (the rebuild fails either way)
        progress("read models", 1, 1)
        summary.phases["postgres"] = time.monotonic() - started

    async def write_entries() -> None:
        # Two chunks in flight: the next one is encoded and sent while Redis runs the script of this one (entries
        # have distinct keys, and each write is position-guarded, so their order does not matter).
        sent: list[asyncio.Task[None]] = []
        try:
            for start in range(0, len(entries), chunk):
                sent.append(asyncio.create_task(cache.load_entries(entries[start : start + chunk], chunk)))
                if len(sent) > 1:
                    await sent[-2]
                    progress("auth cache", start, len(entries))
            if sent:
                await sent[-1]
                progress("auth cache", len(entries), len(entries))
        finally:
            unfinished = [task for task in sent if not task.done()]
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)

    async def write_redis() -> str:
        """Clear, then load the cache; the rebuild's token (`begin_rebuild`)."""
        await cache.clear()
        rebuild = await cache.begin_rebuild()
        await rows_sent.wait()
        started = time.monotonic()
        # Owners have keys of their own (written in their given order): loaded beside the entries.
        await asyncio.gather(write_entries(), cache.load_owners(owners, chunk))
        summary.phases["redis"] = time.monotonic() - started
        return rebuild

    # Both stores are written from the same in-memory projection, so they can be written at once (phase "redis"
    # counts from the rows' hand-over); the cache is marked complete (offsets, epoch, then the watermark) only when
    # both are done.
    # Never below the watermark the cache had: relays refuse a cache whose watermark went back (their guard against
    # a Redis restored from an older snapshot), and after a database restore the replayed log ends lower.
    watermark = max(folder.processed.values(), default=0)
    had = await cache.watermark()
    wrote, loaded = await asyncio.gather(write_postgres(), write_redis(), return_exceptions=True)
    if isinstance(wrote, BaseException):
        # The read side is unchanged (the swap is the transaction's last step), but the cache was cleared and loaded
        # from the fold meanwhile: put it back from the read side, so that "nothing was changed" holds and relays
        # do not answer 454 until a projector runs again (they are stopped during a rebuild).
        await _put_cache_back(store, cache, chunk, had)
        raise wrote
    if isinstance(loaded, BaseException):
        raise loaded  # the read side is swapped in; the cache has no epoch, and a projector's guard rebuilds it
    rebuild, watermark = loaded, max(watermark, had or 0)
    if not await mark_complete(cache, rebuild, await store.load_offsets(), watermark):
        raise CacheLostDuringRebuild()

    summary.events = len(folder.processed)
    summary.invalid = folder.invalid
    summary.credentials = len(fold.credentials)
    summary.domains = len(fold.domains)
    summary.auth_entries = len(entries)
    summary.parked = sum(len(w) for w in fold.parked.values())
    metrics.REBUILDS.labels(summary.source).inc()
    return summary


async def _put_cache_back(store: ReadModelStore, cache: AuthCacheWriter, chunk: int, had: int | None) -> None:
    try:
        await cache.clear()
        await rebuild_cache(store, cache, chunk, REASON_REBUILD_FAILED)
        if had:
            await cache.raise_watermark(had)
    except Exception as exc:  # noqa: BLE001 - the rebuild's own error is the one raised
        log.error(
            "the rebuild failed after clearing the auth cache, and putting it back failed too (%s): relays answer "
            "454 until a projector runs (its guard rebuilds the cache)",
            type(exc).__name__,
        )


async def rebuild_from_event_store(
    event_store: EventStoreReader,
    store: ReadModelStore,
    cache: AuthCacheWriter,
    *,
    chunk: int = 5000,
    progress: Progress = _no_progress,
    log_ends_before: dict[TopicPartitionKey, int] | None = None,
) -> RebuildSummary:
    """Replay `event_store` in position order (one consistent snapshot).

    `log_ends_before`: each partition's end offset, read BEFORE this call (so every record below it was published
    before the snapshot: it is in the event store, or the store no longer holds it); the group's offsets below them
    are raised to them (the module's docstring says why).
    """
    with heap.growing_heap():
        return await _rebuild_from_event_store(event_store, store, cache, chunk, progress, log_ends_before)


async def _rebuild_from_event_store(
    event_store: EventStoreReader,
    store: ReadModelStore,
    cache: AuthCacheWriter,
    chunk: int,
    progress: Progress,
    log_ends_before: dict[TopicPartitionKey, int] | None,
) -> RebuildSummary:
    began = time.monotonic()
    summary = RebuildSummary(SOURCE_EVENT_STORE)
    folder = _Folder()
    done = 0
    await store.start_audit_staging()
    # The reader fetches its next page while this one is folded.
    async for envelopes, total in event_store.pages(EVENT_STORE_CHUNK):
        for envelope, declared in envelopes:
            folder.add_raw(envelope, declared)
        await folder.stage_audit(store)
        done += len(envelopes)
        progress("events", done, total)
    summary.phases["read"] = time.monotonic() - began
    published = {tp: end for tp, end in (log_ends_before or {}).items() if end > 0}
    await _write(store, cache, folder, None, summary, chunk, progress, offsets_at_least=published)
    summary.seconds = time.monotonic() - began
    return summary


async def rebuild_from_kafka(
    store: ReadModelStore,
    cache: AuthCacheWriter,
    log: EventLog,
    topic_names: Sequence[str],
    *,
    keyring: Keyring,
    chunk: int = 5000,
    progress: Progress = _no_progress,
    allow_loss: bool = False,
) -> RebuildSummary:
    """Replay the topics from offset 0 up to their end offsets at the start, verified with `keyring`.

    Raises `LogNotFromZero`, before anything is written, when a partition no longer starts at offset 0, and
    `KafkaRebuildRefused`, before the read side or the cache is touched, unless `allow_loss`, when records are
    signed with a key id the ring lacks (a key retired while the log still holds what it signed: the live
    projector applied those records, and without them a deactivation could be lost), when other records do not
    verify and the live read side holds credentials the rebuilt one would not, or when the log ends below the live
    cache's watermark (a log emptied and still being refilled).
    """
    trimmed = {tp: start for tp, start in (await log.log_starts(topic_names)).items() if start > 0}
    if trimmed:
        raise LogNotFromZero(trimmed)
    with heap.growing_heap():
        return await _rebuild_from_kafka(store, cache, log, topic_names, keyring, chunk, progress, allow_loss)


async def _rebuild_from_kafka(
    store: ReadModelStore,
    cache: AuthCacheWriter,
    log: EventLog,
    topic_names: Sequence[str],
    keyring: Keyring,
    chunk: int,
    progress: Progress,
    allow_loss: bool,
) -> RebuildSummary:
    began = time.monotonic()
    summary = RebuildSummary(SOURCE_KAFKA)
    folder = _Folder()
    ends: dict[TopicPartitionKey, int] = {}
    unknown_keys = 0  # records signed with a key id the ring lacks
    await store.start_audit_staging()
    async for records, done, ends in log.read_to_end(topic_names):
        for record in records:
            try:
                keyring.verify(record.value, record.signature)
            except SignatureRefused as refused:
                summary.unverified += 1
                if refused.reason == REASON_UNKNOWN_KEY:
                    unknown_keys += 1
                continue
            folder.add_raw(record.value, record.declared)
        await folder.stage_audit(store)
        progress("events", sum(done.values()), sum(ends.values()))
    summary.phases["read"] = time.monotonic() - began
    if not allow_loss:
        await _refuse_a_lossy_log(store, cache, folder, summary.unverified, unknown_keys)
    await _write(store, cache, folder, ends, summary, chunk, progress)
    summary.seconds = time.monotonic() - began
    return summary


async def _refuse_a_lossy_log(
    store: ReadModelStore, cache: AuthCacheWriter, folder: _Folder, unverified: int, unknown_keys: int
) -> None:
    if unknown_keys:
        # Signed with a key id the ring lacks: most likely a retired key the live projector verified them with (a
        # lost deactivation would make a revoked credential log in again), possibly forged under an invented id.
        raise KafkaRebuildRefused(
            f"{unknown_keys} records are signed with a key id TAIFA_EVENT_SIGNING_KEYS does not hold (a key that "
            "signed the log retired from the ring?)"
        )
    if unverified:
        # Unsigned records, or a wrong tag under a key id the ring holds: forged, and dead-lettered live, unless
        # the live read side holds credentials the rebuilt one would not.
        lost = await store.credential_ids() - folder.fold.credentials.keys()
        if lost:
            raise KafkaRebuildRefused(
                f"{unverified} records did not verify with TAIFA_EVENT_SIGNING_KEYS, and the live read side holds "
                f"{len(lost)} credentials the rebuilt one would not"
            )
    reaches, live = max(folder.processed.values(), default=0), await cache.watermark()
    if live is not None and reaches < live:
        raise KafkaRebuildRefused(
            f"the log reaches event position {reaches}, below the live auth cache's {live} (a log emptied and "
            "still being refilled by the API's publisher, or a cache that keeps its watermark from before a "
            "database restore)"
        )

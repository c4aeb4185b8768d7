"""Apply one batch of Kafka records: decode, dead-letter the impossible, PostgreSQL, then Redis.

Order of effects (docs/architecture.md, the projector): the read model and the consumed offsets commit in one
PostgreSQL transaction; then the auth cache and the read-your-writes signal are written in one Redis
MULTI; only then does the caller commit the offsets to Kafka. The consume loop overlaps a batch's Redis write
with the next batch's PostgreSQL transaction (`defer_cache`): the Redis writes still run one after another in
batch order, each after its own batch's commit, and the loop never gets more than one batch ahead of Redis. A
transient failure of either store is retried forever with back-off and nothing more is committed meanwhile (at
most that next batch's PostgreSQL transaction). A batch that fails
deterministically is retried a bounded number of times, then applied event by event so that only the
offending events go to the dead-letter topic and the partition moves on.

Revocations come from the event stream: every newly applied `CredentialDeactivated` is announced on
`REVOCATIONS_CHANNEL` with its credential id, even when the same batch creates a new credential for
the username. Failing closed where an effect cannot be applied:
- a `CredentialDeactivated` the read model refuses (dead-lettered) still gets its tombstone in Redis and
  its revocation, and its credential id is quarantined (`projector_quarantined_credentials`, its own
  transaction) so no cache rebuild from the read model brings the credential back; an authentic record
  that cannot be decoded but whose headers declare `CredentialDeactivated` revokes every active entry of
  the domain its key names (one active credential per domain), at the position the value names if it can
  be read, else just above each entry's own;
- a Redis write refused after the PostgreSQL commit (out of memory, a key of the wrong type: not a
  connection failure, which is retried) deletes the entries it was for and the epoch (a missing entry and
  a missing epoch both fail closed; the cache guard rebuilds), logs an error and counts
  `taifa_projector_cache_write_refused_total`. If even that is refused, the projector stops (`CacheRefused`).

Before anything is decoded, each record's signature is verified (`taifa_events.signing`): an unsigned
record, one signed with a key not configured, or one whose tag does not match is dead-lettered at once
(reason `unsigned`, `unknown_signing_key` or `bad_signature`; deterministic, so one attempt) and never
reaches the read model or the auth cache. Whoever can produce to Kafka cannot mint a login.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from taifa_events import CredentialDeactivated, InvalidEvent, decode
from taifa_events.audit import AuditRow, audit_row
from taifa_events.signing import Keyring, SignatureRefused

from taifa_projector import metrics
from taifa_projector.application.cache import epoch_dropped
from taifa_projector.application.ports import AuthCacheWriter, BatchOutcome, DeadLetters, ReadModelStore, Record
from taifa_projector.application.retry import error_name, is_transient, retry_transient
from taifa_projector.application.undecodable import DEACTIVATION, contradicts_declaration, json_object, position_of
from taifa_projector.domain.credentials import created_before, latest_positions, revoked_at
from taifa_projector.domain.fold import Event, cache_writes, changes, revocations
from taifa_projector.domain.log_positions import TopicPartitionKey
from taifa_projector.domain.model import AuthEntry, DomainOwner, tombstone_for, tombstone_of_event

log = logging.getLogger(__name__)

REASON_UNDECODABLE = "undecodable"
REASON_REJECTED = "rejected"
# Records decoded between two hand-backs to the event loop (`decode_stepwise`): about 0.5 ms of CPU. The batch in
# flight waits that long at most for its next step after each PostgreSQL answer (some 20 round trips a batch): at 100
# records (2-3 ms) that delay was measured at ~10 % of the live rate (issue 18).
DECODE_STEP = 25


class CacheRefused(Exception):
    """Redis refused a write and then the fail-closed fallback too: the projector stops rather than go on
    with a cache that may hold a credential the read model has deactivated."""


@dataclass
class BatchReport:
    """What one call of `process` did (for metrics, tests and the benchmark)."""

    next_offsets: dict[TopicPartitionKey, int] = field(default_factory=dict)
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    highest_position: int = 0  # of the events applied (pruning of old processed-event ids keys on it)


@dataclass
class DecodedBatch:
    """Records with their decoded events, and those that could not be decoded (with the reason)."""

    records: Sequence[Record]
    next_offsets: dict[TopicPartitionKey, int]
    events: list[tuple[Record, Event]] = field(default_factory=list)
    # The audit feed row of each event in `events` (None: not in the feed), built while decoding: off the
    # critical path of the batch in flight (the store uses them when every event of the batch is new).
    audit_rows: list[AuditRow | None] = field(default_factory=list)
    undecodable: list[tuple[Record, str]] = field(default_factory=list)
    unverified: list[tuple[Record, SignatureRefused]] = field(default_factory=list)


def next_offsets(records: Sequence[Record]) -> dict[TopicPartitionKey, int]:
    offsets: dict[TopicPartitionKey, int] = {}
    for record in records:
        offsets[record.tp] = max(offsets.get(record.tp, 0), record.offset + 1)
    return offsets


class BatchApplier:
    def __init__(
        self,
        store: ReadModelStore,
        cache: AuthCacheWriter,
        dead_letters: DeadLetters,
        *,
        keyring: Keyring,
        max_attempts: int,
        retry_initial: float,
        retry_max: float,
        publish_applied: bool = True,
    ) -> None:
        self.store = store
        self.cache = cache
        self.dead_letters = dead_letters
        self.keyring = keyring
        self.max_attempts = max_attempts
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.publish_applied = publish_applied
        # The consume loop sets it: each batch's Redis write then runs behind the earlier ones while the next batch
        # goes to PostgreSQL, and the caller's Kafka commit waits for it (`cache_settled`).
        self.defer_cache = False
        self._cache_tail: asyncio.Future[None] | None = None

    def decode(self, records: Sequence[Record]) -> DecodedBatch:
        """Verify and decode a batch (pure CPU, no effects)."""
        batch = DecodedBatch(records=records, next_offsets=next_offsets(records))
        self._decode_into(batch, records)
        return batch

    async def decode_stepwise(self, records: Sequence[Record], step: int = DECODE_STEP) -> DecodedBatch:
        """`decode`, handing the event loop back every `step` records: the consume loop decodes the next batch
        while the previous one waits on PostgreSQL and Redis, and that batch takes its next step as soon as an
        answer arrives instead of after the whole decode (its round trips then overlap the decoding)."""
        batch = DecodedBatch(records=records, next_offsets=next_offsets(records))
        for start in range(0, len(records), step):
            if start:
                await asyncio.sleep(0)
            self._decode_into(batch, records[start : start + step])
        return batch

    def _decode_into(self, batch: DecodedBatch, records: Sequence[Record]) -> None:
        for record in records:
            try:
                self.keyring.verify(record.value, record.signature)
            except SignatureRefused as refused:
                batch.unverified.append((record, refused))
                continue
            try:
                if record.value is None:
                    raise InvalidEvent("record has no value")
                event = decode(record.value, declared=record.declared)
                batch.events.append((record, event))
                batch.audit_rows.append(audit_row(event))
            except InvalidEvent as exc:
                batch.undecodable.append((record, str(exc)))

    async def process(self, records: Sequence[Record]) -> BatchReport:
        """Decode and apply `records` (several partitions, each in offset order)."""
        return await self.apply(self.decode(records))

    async def apply(self, batch: DecodedBatch) -> BatchReport:
        """Apply a decoded batch; returns the offsets to commit to Kafka."""
        report = BatchReport(next_offsets=batch.next_offsets)
        for record, refused in batch.unverified:
            # Deterministic too: the same bytes never verify later (one attempt; the reason in the DLQ headers).
            await self._dead_letter(record, refused.reason, refused.detail, attempts=1, report=report)
        for record, reason in batch.undecodable:
            # Deterministic: decoding again gives the same answer, so one attempt is enough.
            await self._dead_letter(record, REASON_UNDECODABLE, reason, attempts=1, report=report)
            if record.declared is not None and record.declared[0] == DEACTIVATION:
                await self._revoke_undecodable(record, [e for _, e in batch.events])
        decoded = batch.events
        last_error: BaseException | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                await self._apply([e for _, e in decoded], report.next_offsets, report, batch.audit_rows)
                return report
            except Exception as exc:
                if is_transient(exc) or isinstance(exc, CacheRefused):
                    raise
                last_error = exc
                log.warning(
                    "batch failed deterministically (%s), attempt %d/%d", error_name(exc), attempt, self.max_attempts
                )
        assert last_error is not None
        await self._isolate(decoded, report)
        return report

    async def _isolate(self, decoded: Sequence[tuple[Record, Event]], report: BatchReport) -> None:
        """Apply event by event; an event that keeps failing goes to the dead-letter topic."""
        for record, event in decoded:
            single = {record.tp: record.offset + 1}
            for attempt in range(1, self.max_attempts + 1):
                try:
                    await self._apply([event], single, report)
                    break
                except Exception as exc:
                    if is_transient(exc) or isinstance(exc, CacheRefused):
                        raise
                    if attempt == self.max_attempts:
                        await self._dead_letter(
                            record, REASON_REJECTED, error_name(exc), attempts=attempt, report=report
                        )
                        if type(event.data) is CredentialDeactivated:
                            await self._revoke_rejected(event)
                        await self._apply([], single, report)
        # Record the batch's end offsets (dead-lettered records at the tails included).
        await self._apply([], report.next_offsets, report)

    async def _apply(
        self,
        events: list[Event],
        offsets: dict[TopicPartitionKey, int],
        report: BatchReport,
        audit_rows: Sequence[AuditRow | None] | None = None,
    ) -> None:
        outcome: BatchOutcome = await retry_transient(
            lambda: self.store.apply_batch(events, offsets, audit_rows=audit_rows),
            initial=self.retry_initial,
            maximum=self.retry_max,
        )
        entries = cache_writes(outcome.fold, outcome.seen_before)
        applied = [e.event_id for e in events] if self.publish_applied else []
        await self._in_order(
            self._write_cache(
                list(entries.values()),
                offsets,
                applied,
                revocations(outcome.new_events),
                owners=outcome.fold.changed_owners(),
                watermark=max((e.position for e in events), default=0),
                changed=changes(outcome.new_events),
                # Also after a retry whose commit's answer was lost (the read model already held these offsets):
                # the retry finds every event applied and cannot write the batch's owners, plans and revocations
                # again, so the cache is found behind and rebuilt.
                previous_offsets=outcome.previous_offsets,
            )
        )
        for event_type, count in Counter(e.event_type for e in outcome.new_events).items():
            metrics.EVENTS_APPLIED.labels(event_type).inc(count)
        if outcome.duplicates:
            metrics.EVENTS_DUPLICATE.inc(outcome.duplicates)
        report.applied += len(outcome.new_events)
        report.duplicates += outcome.duplicates
        report.highest_position = max(report.highest_position, max((e.position for e in events), default=0))

    async def _in_order(self, write: Coroutine[Any, Any, None]) -> None:
        """Run a Redis write after every earlier one (a batch's cache write always follows its own PostgreSQL
        commit and the previous batch's cache write). With `defer_cache` it is queued and this returns at once."""
        previous = self._cache_tail

        async def after_previous() -> None:
            if previous is not None:
                try:
                    await previous
                except BaseException:
                    write.close()  # the earlier write stopped the projector: this one never runs
                    raise
            await write

        if self.defer_cache:
            self._cache_tail = asyncio.ensure_future(after_previous())
        else:
            self._cache_tail = None
            await after_previous()

    def cache_pending(self) -> asyncio.Future[None] | None:
        """The last Redis write queued (it runs after every earlier one), None when none is queued."""
        return self._cache_tail

    async def cache_settled(self) -> None:
        """Wait for every queued Redis write; raises what stopped one (`CacheRefused`)."""
        tail = self._cache_tail
        if tail is not None:
            await tail
            if self._cache_tail is tail:
                self._cache_tail = None

    async def _write_cache(
        self,
        entries: list[AuthEntry],
        offsets: dict[TopicPartitionKey, int],
        applied: list[UUID],
        revoked: list[tuple[str, UUID]],
        *,
        owners: list[DomainOwner],
        watermark: int,
        changed: list[tuple[str, UUID]] | None = None,
        previous_offsets: dict[TopicPartitionKey, int] | None = None,
    ) -> None:
        """One Redis transaction for the batch; if Redis refuses it (not unreachable: that is retried), fail
        closed: delete those entries and the epoch, announce the revocations and changes, and let the guard
        rebuild."""
        notices = changed or []
        try:
            dropped = await retry_transient(
                lambda: self.cache.write_batch(
                    entries,
                    offsets,
                    applied,
                    revoked,
                    owners=owners,
                    watermark=watermark,
                    changes=notices,
                    previous_offsets=previous_offsets,
                ),
                initial=self.retry_initial,
                maximum=self.retry_max,
            )
            if dropped is not None:
                epoch_dropped(dropped, self.cache.highest_watermark)
        except Exception as exc:  # noqa: BLE001 - retry_transient only lets deterministic failures through
            metrics.CACHE_WRITE_REFUSED.labels(error_name(exc)).inc()
            log.error(
                "Redis refused the auth-cache write after the read model committed (%s): deleting its %d entries "
                "and the cache epoch (relays fail closed until the cache is rebuilt)",
                error_name(exc),
                len(entries),
            )
            try:
                await retry_transient(
                    lambda: self.cache.fail_closed([e.username for e in entries], revoked, notices),
                    initial=self.retry_initial,
                    maximum=self.retry_max,
                )
            except Exception as fallback:
                log.critical("Redis refused the fail-closed fallback too (%s); stopping", error_name(fallback))
                raise CacheRefused(error_name(fallback)) from fallback

    async def _revoke_rejected(self, event: Event) -> None:
        """A deactivation the read model refused: quarantine its credential, tombstone it, announce it."""
        tombstone = tombstone_of_event(event)
        assert tombstone is not None
        await self._quarantine({tombstone.credential_id: event.position})
        await self._in_order(
            self._write_cache(
                [tombstone], {}, [], [(tombstone.username, tombstone.credential_id)], owners=[], watermark=0
            )
        )

    async def _revoke_undecodable(self, record: Record, batch: Sequence[Event]) -> None:
        """An authentic record declaring `CredentialDeactivated` that cannot be decoded: revoke every active entry
        of the domain its key names (only one credential per domain is active), fail closed; and every credential
        of the domain this batch creates before it (applied after this, their creation is not in the read model
        yet: the tombstone's position keeps their entry revoked when it comes)."""
        try:
            domain_id = UUID((record.key or b"").decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            log.error("undecodable deactivation without a domain id key: nothing could be revoked")
            return
        envelope = json_object(record.value)  # read once for both checks below
        if contradicts_declaration(envelope, domain_id):
            # The key and the declared type are not signed; a value that names another event or domain is not
            # this domain's deactivation, whatever they claim.
            log.error("undecodable record declared a deactivation its value contradicts: nothing revoked")
            return
        position = position_of(envelope)
        active = await retry_transient(
            lambda: self.store.active_entries_of_domain(domain_id),
            initial=self.retry_initial,
            maximum=self.retry_max,
        )
        highest = latest_positions(batch)
        at = {e.credential_id: revoked_at(position, e.position, highest.get(e.credential_id, 0)) for e in active}
        tombstones = [tombstone_for(e, at[e.credential_id]) for e in active if not position or e.position < position]
        known = {e.credential_id for e in active}
        tombstones += [t for t in created_before(batch, domain_id, position, highest) if t.credential_id not in known]
        if not tombstones:
            return
        log.error(
            "undecodable deactivation for domain %s: revoking its %d active credentials", domain_id, len(tombstones)
        )
        await self._quarantine({t.credential_id: t.position for t in tombstones})
        await self._in_order(
            self._write_cache(
                tombstones, {}, [], [(t.username, t.credential_id) for t in tombstones], owners=[], watermark=0
            )
        )

    async def _quarantine(self, revoked: dict[UUID, int]) -> None:
        await retry_transient(
            lambda: self.store.quarantine(revoked),
            initial=self.retry_initial,
            maximum=self.retry_max,
        )
        metrics.CREDENTIALS_QUARANTINED.inc(len(revoked))

    async def _dead_letter(
        self, record: Record, reason: str, error: str, *, attempts: int, report: BatchReport
    ) -> None:
        log.warning("dead-lettering %s[%d]@%d: %s (%s)", record.topic, record.partition, record.offset, reason, error)
        await self.dead_letters.send(record, reason=reason, error=error, attempts=attempts)
        metrics.DLQ_RECORDS.labels(record.topic, reason).inc()
        report.dead_lettered += 1

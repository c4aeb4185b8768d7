"""In-memory implementations of the projector's own ports (`taifa_projector.application.ports`), for unit tests.

They keep the promises the real adapters keep (one batch applied atomically with its offsets, each event id
once, cache writes compare-on-position, offsets and the watermark only ever raised) and let a test make a
store unavailable or make it reject something, as the adapters report it: `StoreUnavailable`, `StoreRejected`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from taifa_events import Envelope, encode
from taifa_events.audit import QUOTA_REACHED, AuditRow, audit_row
from taifa_events.signing import Keyring, signature_of
from taifa_projector.application.ports import (
    AuthCacheWriter,
    BatchOutcome,
    CacheSnapshot,
    DeadLetters,
    EpochDropped,
    EventStoreReader,
    ReadModelStore,
    Record,
    StoreRejected,
    StoreUnavailable,
)
from taifa_projector.domain.fold import Event, ReadSideFold, owners_of
from taifa_projector.domain.log_positions import TopicPartitionKey
from taifa_projector.domain.model import AuthEntry, DomainOwner, newer_entry, quarantined

KEYRING = Keyring({"unit": b"u" * 32}, "unit")
TOPIC = "smtp-credentials"


def record_of(event: Envelope[Any], offset: int, *, partition: int = 0, keyring: Keyring = KEYRING) -> Record:
    """The record the API's publisher would have produced for `event` (signed with `keyring`)."""
    value = encode(event)
    return Record(
        topic=TOPIC,
        partition=partition,
        offset=offset,
        key=event.key,
        value=value,
        declared=(event.event_type, event.schema_version),
        signature=signature_of(keyring.headers(value)),
    )


def raw_record(
    value: bytes, offset: int, *, key: bytes | None = None, declared: tuple[str, int] | None = None
) -> Record:
    """A record with arbitrary bytes, signed (authentic, but maybe not decodable)."""
    return Record(TOPIC, 0, offset, key, value, declared, signature_of(KEYRING.headers(value)))


class Failures:
    """What a fake store should fail with next: `unavailable` calls raise StoreUnavailable first."""

    def __init__(self, store: str) -> None:
        self.store = store
        self.unavailable = 0
        self.calls_while_unavailable = 0

    def check(self) -> None:
        if self.unavailable > 0:
            self.unavailable -= 1
            self.calls_while_unavailable += 1
            raise StoreUnavailable(self.store, "ConnectionRefusedError")


class InMemoryReadModelStore:
    """`ports.ReadModelStore` in memory: the whole read side in one `ReadSideFold`."""

    def __init__(self) -> None:
        self.state = ReadSideFold()
        self.processed: dict[UUID, int] = {}
        self.recorded: dict[TopicPartitionKey, int] = {}
        self.quarantined: dict[UUID, int] = {}
        self.rejected_events: set[UUID] = set()  # a batch holding one of these is refused (a constraint)
        self.failures = Failures("postgres")
        self.batches = 0
        self.audit: dict[UUID, AuditRow] = {}  # rm_audit_events
        self.staged_audit: list[AuditRow] | None = None  # a rebuild's staging area

    async def load_offsets(self, partitions: Iterable[TopicPartitionKey] | None = None) -> dict[TopicPartitionKey, int]:
        self.failures.check()
        if partitions is None:
            return dict(self.recorded)
        return {tp: self.recorded[tp] for tp in partitions if tp in self.recorded}

    async def apply_batch(
        self,
        events: Sequence[Event],
        offsets: dict[TopicPartitionKey, int],
        *,
        audit_rows: Sequence[AuditRow | None] | None = None,
    ) -> BatchOutcome:
        if audit_rows is not None:  # the rows the applier built while decoding are those of the events
            assert list(audit_rows) == [audit_row(e) for e in events]
        self.failures.check()
        if any(e.event_id in self.rejected_events for e in events):
            raise StoreRejected("postgres", "CheckViolationError(23514)")
        unique: dict[UUID, Event] = {}
        for event in events:
            unique.setdefault(event.event_id, event)
        fresh = [e for e in unique.values() if e.event_id not in self.processed]
        seen_before = [e for e in unique.values() if e.event_id in self.processed]
        fold = ReadSideFold(
            credentials=dict(self.state.credentials),
            domains=dict(self.state.domains),
            auth=dict(self.state.auth),
            parked={stream: dict(waiting) for stream, waiting in self.state.parked.items()},
            plans=dict(self.state.plans),
        )
        fold.apply_all(fresh)
        # Committed as one transaction: nothing above could fail half-way.
        self.state.credentials, self.state.domains = fold.credentials, fold.domains
        self.state.auth, self.state.parked = fold.auth, fold.parked
        self.state.plans = fold.plans
        self.processed.update((e.event_id, e.position) for e in fresh)
        for row in (audit_row(e) for e in fresh):
            if row is not None:
                self.audit.setdefault(row.id, row)
        previous = {tp: self.recorded[tp] for tp in offsets if tp in self.recorded}
        self.recorded.update(offsets)
        self.batches += 1
        return BatchOutcome(fresh, len(events) - len(fresh), fold, seen_before, previous)

    async def auth_snapshot(self) -> CacheSnapshot:
        self.failures.check()
        return CacheSnapshot(
            entries=quarantined(self.state.auth.values(), self.quarantined),
            owners=owners_of(d for d in self.state.domains.values() if d.status != "pending"),
            offsets=dict(self.recorded),
            highest_position=max(self.processed.values(), default=0),
        )

    async def quarantine(self, revoked: dict[UUID, int]) -> None:
        self.failures.check()
        for credential_id, position in revoked.items():
            self.quarantined[credential_id] = max(self.quarantined.get(credential_id, 0), position)

    async def quarantined_credentials(self) -> dict[UUID, int]:
        self.failures.check()
        return dict(self.quarantined)

    async def credential_ids(self) -> set[UUID]:
        self.failures.check()
        return set(self.state.credentials)

    async def active_entries_of_domain(self, domain_id: UUID) -> list[AuthEntry]:
        self.failures.check()
        return [e for e in self.state.auth.values() if e.domain_id == domain_id and e.active]

    async def prune_processed(self, below_position: int, chunk: int) -> int | None:
        self.failures.check()
        old = [i for i, p in self.processed.items() if p < below_position][:chunk]
        for event_id in old:
            del self.processed[event_id]
        return len(old)

    async def replace_all(
        self,
        fold: ReadSideFold,
        processed: Sequence[tuple[UUID, int]],
        offsets: dict[TopicPartitionKey, int] | None,
        *,
        offsets_at_least: dict[TopicPartitionKey, int] | None = None,
        rows_sent: Callable[[], None] | None = None,
    ) -> None:
        self.failures.check()
        if rows_sent is not None:
            rows_sent()
        self.state = ReadSideFold(
            credentials=dict(fold.credentials),
            domains=dict(fold.domains),
            auth=dict(fold.auth),
            parked=fold.parked,
            plans=dict(fold.plans),
        )
        self.processed = dict(processed)
        kept = {i: r for i, r in self.audit.items() if r.type == QUOTA_REACHED}  # not in the event store
        self.audit = {**{r.id: r for r in self.staged_audit or ()}, **kept}
        self.staged_audit = None
        if offsets is not None:
            self.recorded = dict(offsets)
        for tp, offset in (offsets_at_least or {}).items():
            self.recorded[tp] = max(self.recorded.get(tp, 0), offset)

    async def start_audit_staging(self) -> None:
        self.staged_audit = []

    async def stage_audit(self, rows: Sequence[AuditRow]) -> None:
        assert self.staged_audit is not None, "stage_audit before start_audit_staging"
        self.staged_audit.extend(rows)

    async def sorted_rows(self, table: str, key: str) -> list[tuple[object, ...]]:
        rows: dict[str, Iterable[tuple[Any, ...]]] = {
            "rm_audit_events": self.audit.values(),
            "rm_smtp_credentials": (tuple(r[:-1]) for r in self.state.credentials.values()),  # secrets: own table
            "rm_credential_secrets": (s for r in self.state.credentials.values() for s in r.secrets),
            "rm_domains": self.state.domains.values(),
            "rm_usage_windows": (),  # usage is not in this store's fold (usage_fakes.InMemoryUsageStore)
        }
        return sorted(tuple(r) for r in rows[table])


@dataclass
class InMemoryAuthCache:
    """`ports.AuthCacheWriter` in memory, with what was announced on the revocations channel."""

    entries: dict[str, AuthEntry] = field(default_factory=dict)
    owners: dict[str, tuple[UUID | None, int]] = field(default_factory=dict)  # name -> (owner, position)
    seen_offsets: dict[TopicPartitionKey, int] = field(default_factory=dict)
    current_epoch: str | None = None
    current_watermark: int | None = None
    revocations: list[tuple[str, UUID]] = field(default_factory=list)
    changes: list[tuple[str, UUID]] = field(default_factory=list)  # "credential changed" notices
    applied: list[UUID] = field(default_factory=list)
    highest_watermark: int = 0
    rebuilds_under_way: set[str] = field(default_factory=set)  # begin_rebuild's tokens (FLUSHDB loses them)
    refuse_writes: int = 0  # the next N batch writes are refused (out of memory)
    refuse_fail_closed: bool = False
    failures: Failures = field(default_factory=lambda: Failures("redis"))

    async def write_batch(
        self,
        entries: Iterable[AuthEntry],
        offsets: dict[TopicPartitionKey, int],
        applied: Sequence[UUID],
        revocations: Sequence[tuple[str, UUID]],
        *,
        owners: Sequence[DomainOwner] = (),
        watermark: int = 0,
        changes: Sequence[tuple[str, UUID]] = (),
        previous_offsets: dict[TopicPartitionKey, int] | None = None,
    ) -> EpochDropped | None:
        self.failures.check()
        if self.refuse_writes > 0:
            self.refuse_writes -= 1
            raise StoreRejected("redis", "OutOfMemoryError")
        dropped = None
        behind = any(self.seen_offsets.get(tp, -1) < offset for tp, offset in (previous_offsets or {}).items())
        if behind and self.current_epoch is not None:
            self.current_epoch = None
            dropped = EpochDropped.OFFSETS_BEHIND
        self._write_entries(entries)
        self._write_owners(owners)
        if watermark > 0:
            seen = self.highest_watermark
            if seen > 0 and (self.current_watermark is None or self.current_watermark < seen):
                self.current_epoch = None
                dropped = EpochDropped.WATERMARK_WENT_BACK
            else:
                self.current_watermark = max(self.current_watermark or 0, watermark)
                self.highest_watermark = max(self.highest_watermark, self.current_watermark)
        self._raise(offsets)
        self.revocations += revocations
        self.changes += changes
        self.applied += applied
        return dropped

    async def fail_closed(
        self,
        usernames: Iterable[str],
        revocations: Sequence[tuple[str, UUID]],
        changes: Sequence[tuple[str, UUID]] = (),
    ) -> None:
        self.failures.check()
        if self.refuse_fail_closed:
            raise StoreRejected("redis", "ResponseError")
        self.current_epoch = None
        for username in usernames:
            self.entries.pop(username, None)
        self.revocations += revocations
        self.changes += changes

    async def load_entries(self, entries: Sequence[AuthEntry], chunk: int) -> None:
        self.failures.check()
        self._write_entries(entries)

    async def load_owners(self, owners: Sequence[DomainOwner], chunk: int) -> None:
        self.failures.check()
        self._write_owners(owners)

    async def raise_watermark(self, position: int) -> None:
        self.failures.check()
        self.current_watermark = max(self.current_watermark or 0, position)
        self.highest_watermark = max(self.highest_watermark, self.current_watermark)

    async def watermark(self) -> int | None:
        return self.current_watermark

    async def raise_offsets(self, offsets: dict[TopicPartitionKey, int]) -> None:
        self._raise(offsets)

    async def offsets(self) -> dict[TopicPartitionKey, int]:
        return dict(self.seen_offsets)

    async def epoch(self) -> str | None:
        self.failures.check()
        return self.current_epoch

    async def begin_rebuild(self) -> str:
        token = f"rebuild-{len(self.rebuilds_under_way)}"
        self.rebuilds_under_way.add(token)
        return token

    async def set_epoch(self, epoch: str, rebuild: str) -> bool:
        if rebuild not in self.rebuilds_under_way:
            return False
        self.rebuilds_under_way.discard(rebuild)
        self.current_epoch = epoch
        return True

    async def drop_epoch(self) -> None:
        self.current_epoch = None

    async def clear(self) -> int:
        removed = len(self.entries) + len(self.owners)
        self.entries, self.owners, self.seen_offsets = {}, {}, {}
        self.current_epoch = self.current_watermark = None
        return removed

    async def all_entries(self) -> dict[str, dict[str, str]]:
        return {username: {k: str(v) for k, v in e._asdict().items()} for username, e in sorted(self.entries.items())}

    async def all_domain_owners(self) -> dict[str, str]:
        return {name: json.dumps([str(o), p]) for name, (o, p) in sorted(self.owners.items())}

    def flush(self) -> None:
        """What FLUSHDB does to the cache (this writer's memory of the watermark stays)."""
        self.entries, self.owners, self.seen_offsets = {}, {}, {}
        self.current_epoch = self.current_watermark = None
        self.rebuilds_under_way = set()

    def _write_entries(self, entries: Iterable[AuthEntry]) -> None:
        for entry in entries:
            self.entries[entry.username] = newer_entry(self.entries.get(entry.username), entry)

    def _write_owners(self, owners: Iterable[DomainOwner]) -> None:
        for owner in owners:
            current, position = self.owners.get(owner.name, (None, 0))
            if position >= owner.position:
                continue
            if owner.holds:
                self.owners[owner.name] = (owner.account_id, owner.position)
            elif current is None or current == owner.account_id:
                self.owners[owner.name] = (None, owner.position)

    def _raise(self, offsets: dict[TopicPartitionKey, int]) -> None:
        for tp, offset in offsets.items():
            self.seen_offsets[tp] = max(self.seen_offsets.get(tp, 0), offset)


@dataclass
class DeadLetter:
    record: Record
    reason: str
    error: str
    attempts: int


class InMemoryDeadLetters:
    """`ports.DeadLetters` that keeps what it was sent."""

    def __init__(self) -> None:
        self.sent: list[DeadLetter] = []

    async def send(self, record: Record, *, reason: str, error: str, attempts: int) -> None:
        self.sent.append(DeadLetter(record, reason, error, attempts))


class InMemoryEventStore:
    """`ports.EventStoreReader` over a list of envelopes."""

    def __init__(self, events: Sequence[Envelope[Any]]) -> None:
        self.events = events

    async def pages(self, page_size: int) -> AsyncIterator[tuple[list[tuple[str, tuple[str, int]]], int]]:
        ordered = sorted(self.events, key=lambda e: e.position)
        texts = [(encode(e).decode(), (e.event_type, e.schema_version)) for e in ordered]
        for start in range(0, len(texts), page_size):
            yield texts[start : start + page_size], len(texts)


def _implements_the_ports() -> None:
    """Never called: `mypy tests/unit/projector/fakes.py` checks that each fake is its port."""
    _store: ReadModelStore = InMemoryReadModelStore()
    _cache: AuthCacheWriter = InMemoryAuthCache()
    _letters: DeadLetters = InMemoryDeadLetters()
    _events: EventStoreReader = InMemoryEventStore([])

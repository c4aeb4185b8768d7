"""What the use cases need from the outside world: the stores, the dead-letter sink and the Kafka log.

The adapters (`adapters/postgres.py`, `redis_cache.py`, `event_store.py`, `kafka.py`) implement these
protocols, and the unit tests implement them in memory. A store reports a failure in one of two ways,
whatever its driver said (the adapters translate at the edge, as httpx's `map_exceptions` does):

- `StoreUnavailable`: the store could not do it now (down, restarting, overloaded, a failover): retry
  with back-off, forever, committing nothing meanwhile;
- `StoreRejected`: the store answered that the request is wrong (a constraint, a key of the wrong type,
  out of memory): the same request fails again, so it is isolated and dead-lettered, or fails closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple, Protocol
from uuid import UUID

from taifa_events.audit import AuditRow
from taifa_events.signing import Signature
from taifa_events.usage import QuotaReached, UsageWindow

from taifa_projector.domain.fold import Event, ReadSideFold
from taifa_projector.domain.log_positions import TopicPartitionKey
from taifa_projector.domain.model import AuthEntry, DomainOwner

# --- failures ------------------------------------------------------------------------------------


class StoreError(Exception):
    """A store's failure, named without its message (which could quote event values)."""

    def __init__(self, store: str, error: str) -> None:
        super().__init__(f"{store}: {error}")
        self.store = store  # "postgres", "redis": the metrics' label
        self.error = error  # the driver's error class (and SQLSTATE), e.g. "CheckViolationError(23514)"


class StoreUnavailable(StoreError):
    """Transient: the store could not answer now; retry with back-off."""


class StoreRejected(StoreError):
    """Deterministic: the store refused this request and will refuse it again."""


# --- what flows through the ports -------------------------------------------------------------------


class Record(NamedTuple):
    """One consumed Kafka record as the use cases need it: where it came from, its raw key and value, and
    what its headers claim (plain data, no client types; a named tuple: one is built per consumed record,
    and a frozen dataclass costs three times as much to build)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    declared: tuple[str, int] | None = None  # (event_type, schema_version) its headers name: a decoding hint
    signature: Signature | None = None  # what its signature headers claim; verified before decoding

    @property
    def tp(self) -> TopicPartitionKey:
        return (self.topic, self.partition)


@dataclass(frozen=True)
class BatchOutcome:
    """What one applied batch did: the events that were new, and the fold (rows it changed)."""

    new_events: list[Event]
    duplicates: int
    fold: ReadSideFold
    seen_before: list[Event]  # events applied before (a redelivery)
    # The offsets the read model had recorded for the batch's partitions before it committed (none: a new partition);
    # the batch's Redis write checks that the cache has seen them (`AuthCacheWriter.write_batch`).
    previous_offsets: dict[TopicPartitionKey, int] = field(default_factory=dict)


class EpochDropped(Enum):
    """Why a batch's Redis write deleted the cache epoch instead of building on the cache (relays then refuse
    it until the guard has rebuilt it from the read model)."""

    WATERMARK_WENT_BACK = "watermark_went_back"  # below one this writer had seen: Redis went back in time
    OFFSETS_BEHIND = "offsets_behind"  # behind what PostgreSQL recorded before the batch: Redis lost writes


@dataclass(frozen=True)
class CacheSnapshot:
    """What the auth cache is rebuilt from, read in one consistent snapshot of the read model."""

    entries: list[AuthEntry]  # quarantined credentials already turned into tombstones
    owners: list[DomainOwner]  # in position order
    offsets: dict[TopicPartitionKey, int]
    highest_position: int  # of the events applied: the cache's watermark once rebuilt (0 when none)


# (records, positions read so far, end offsets known so far) of a whole-topic read.
LogChunk = tuple[list[Record], dict[TopicPartitionKey, int], dict[TopicPartitionKey, int]]


# --- the ports --------------------------------------------------------------------------------------


class ReadModelStore(Protocol):
    """The read models and the projector's bookkeeping (processed ids, offsets, quarantine)."""

    async def load_offsets(
        self, partitions: Iterable[TopicPartitionKey] | None = None
    ) -> dict[TopicPartitionKey, int]: ...

    async def apply_batch(
        self,
        events: Sequence[Event],
        offsets: dict[TopicPartitionKey, int],
        *,
        audit_rows: Sequence[AuditRow | None] | None = None,
    ) -> BatchOutcome:
        """Apply `events` and record `offsets` atomically (each event id once). `audit_rows`, when given, are
        `audit_row(e)` for each of `events`, built beforehand (the store may build them itself instead)."""
        ...

    async def auth_snapshot(self) -> CacheSnapshot: ...

    async def quarantine(self, revoked: dict[UUID, int]) -> None:
        """Record credentials whose deactivation was dead-lettered (credential id -> its position)."""
        ...

    async def quarantined_credentials(self) -> dict[UUID, int]: ...

    async def credential_ids(self) -> set[UUID]:
        """Every credential the read model holds (a Kafka rebuild compares them with what its log gives)."""
        ...

    async def active_entries_of_domain(self, domain_id: UUID) -> list[AuthEntry]: ...

    async def prune_processed(self, below_position: int, chunk: int) -> int | None:
        """Forget up to `chunk` processed-event ids below the position; None if another instance prunes."""
        ...

    async def replace_all(
        self,
        fold: ReadSideFold,
        processed: Sequence[tuple[UUID, int]],
        offsets: dict[TopicPartitionKey, int] | None,
        *,
        offsets_at_least: dict[TopicPartitionKey, int] | None = None,
        rows_sent: Callable[[], None] | None = None,
    ) -> None:
        """Replace the whole read side at once (rebuilds). `rows_sent` is called once every row has been handed
        to the store (what is left is the store's own work: indexes, the swap)."""
        ...

    async def start_audit_staging(self) -> None:
        """Begin a rebuild's audit feed: an empty staging area that `replace_all` then swaps in (issue 17)."""
        ...

    async def stage_audit(self, rows: Sequence[AuditRow]) -> None:
        """Add a page of the rebuild's audit feed rows to the staging area."""
        ...

    async def sorted_rows(self, table: str, key: str) -> list[tuple[object, ...]]: ...


class AuthCacheWriter(Protocol):
    """The auth cache the relays read, from the writer's side (and the read-your-writes signal)."""

    # The highest watermark this writer has written or read back: a lower one later is a regression.
    highest_watermark: int

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
        """All of a batch's effects at once, the revocations and "credential changed" notices (`changes`) after the
        entries. First, in the same transaction: if the cache's offsets are behind `previous_offsets` (what
        PostgreSQL recorded before the batch), or its watermark went back, the epoch is deleted and the reason
        returned; None when the cache was current."""
        ...

    async def fail_closed(
        self,
        usernames: Iterable[str],
        revocations: Sequence[tuple[str, UUID]],
        changes: Sequence[tuple[str, UUID]] = (),
    ) -> None:
        """Delete these entries and the epoch, announce the revocations and changes (after a refused write)."""
        ...

    async def load_entries(self, entries: Sequence[AuthEntry], chunk: int) -> None: ...

    async def load_owners(self, owners: Sequence[DomainOwner], chunk: int) -> None: ...

    async def raise_watermark(self, position: int) -> None: ...

    async def watermark(self) -> int | None: ...

    async def raise_offsets(self, offsets: dict[TopicPartitionKey, int]) -> None: ...

    async def offsets(self) -> dict[TopicPartitionKey, int]: ...

    async def epoch(self) -> str | None: ...

    async def begin_rebuild(self) -> str:
        """Note a rebuild under way; its token, for `set_epoch`."""
        ...

    async def set_epoch(self, epoch: str, rebuild: str) -> bool:
        """Mark the cache complete under `epoch` once the rebuild `rebuild` has loaded it, unless Redis lost data
        since the rebuild began (its token is gone with the rest): then nothing is set, False (rebuild again)."""
        ...

    async def drop_epoch(self) -> None: ...

    async def clear(self) -> int: ...

    async def all_entries(self) -> dict[str, dict[str, str]]: ...

    async def all_domain_owners(self) -> dict[str, str]: ...


class DeadLetters(Protocol):
    """Where a record that can never be applied goes, unchanged, with why."""

    async def send(self, record: Record, *, reason: str, error: str, attempts: int) -> None: ...


class EventStoreReader(Protocol):
    """The log of record (the API's event store), read in position order for a rebuild."""

    def pages(self, page_size: int) -> AsyncIterator[tuple[list[tuple[str, tuple[str, int]]], int]]:
        """Envelope JSON texts page by page, each with the (event_type, schema_version) of its row (a decoding
        hint, as a Kafka record's headers: the text decides), from one consistent snapshot, with the total count."""
        ...


class EventLog(Protocol):
    """The Kafka topics read as a whole, without a consumer group (Kafka rebuilds)."""

    async def log_starts(self, topic_names: Sequence[str]) -> dict[TopicPartitionKey, int]:
        """The first offset each partition still holds (0 unless records were deleted)."""
        ...

    async def log_ends(self, topic_names: Sequence[str]) -> dict[TopicPartitionKey, int]:
        """The offset each partition's next record will get (its end, as the broker answers now)."""
        ...

    def read_to_end(self, topic_names: Sequence[str]) -> AsyncIterator[LogChunk]:
        """Every record from offset 0 up to each partition's end; raises `LogNotFromZero` on a trimmed log."""
        ...


# --- usage (issue 16): counted by the relays in Redis, flushed to the usage topic, applied to the read model -------


class UsageStore(Protocol):
    """The usage read model (`rm_usage_windows` and the credentials' and secrets' last use)."""

    async def apply_windows(self, windows: Sequence[UsageWindow], notices: Sequence[QuotaReached] = ()) -> None:
        """Apply each window with GREATEST per counter and last-use time (`domain.usage.merge_window`), and add the
        quota notices to the audit feed (once each), in one transaction."""
        ...


class UsageCounters(Protocol):
    """The relays' usage counters in Redis, as the flusher reads them."""

    async def pending(self) -> list[tuple[UUID, int]]:
        """(credential id, window start) of every window the relays have counted into and not yet closed."""
        ...

    async def read(self, credential_id: UUID, window: int) -> dict[str, str]:
        """The window's hash (empty when it expired or was never written)."""
        ...

    async def close(self, credential_id: UUID, window: int, published: Mapping[str, str]) -> bool:
        """Forget a window that is closed and published (`published`: the hash as read for it): it is not flushed
        again. Unless the hash changed since it was read (a relay's late batch): then it stays pending, to be
        published again with that batch counted; False."""
        ...

    async def quota_notices(self, most: int) -> list[bytes]:
        """The oldest quota notices (JSON, as stored), oldest first, without removing them."""
        ...

    async def drop_quota_notices(self, notices: Sequence[bytes]) -> None:
        """Remove these notices (after they were published), each once, by value: several instances may flush the
        same notices, and none may remove a notice it did not read."""
        ...


class UsagePublisher(Protocol):
    """The usage topic: signed records keyed by credential id."""

    async def publish(self, records: Sequence[UsageWindow | QuotaReached]) -> None: ...

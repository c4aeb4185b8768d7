"""The read models and the projector's bookkeeping in PostgreSQL (asyncpg).

A live batch is applied in ONE transaction: record the event ids, lock and load the rows the batch
touches, fold, write what changed (each write conditional on `position` once more), record the
consumed offsets. A rebuild fills new tables with COPY and swaps them in (`postgres_rebuild`, mixed in here).
Every method reports a driver's failure as `StoreUnavailable` / `StoreRejected` (`driver_errors`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Final
from uuid import UUID

import asyncpg
from taifa_events import AccountCreated, decode, envelope_to_json
from taifa_events.audit import AuditRow, audit_row

from taifa_projector.adapters import audit_feed
from taifa_projector.adapters.bookkeeping_sql import (
    PRUNE_LOCK,
    PRUNE_PROCESSED,
    RECORD_OFFSETS,
    RECORD_PROCESSED,
    lock_accounts,
)
from taifa_projector.adapters.driver_errors import postgres_errors
from taifa_projector.adapters.postgres_rebuild import RebuildStore
from taifa_projector.adapters.read_side_tables import (
    AUTH_COLUMNS,
    CREDENTIAL_COLUMNS,
    DOMAIN_COLUMNS,
    KEPT_TABLES,
    READ_SIDE_TABLES,
    SECRET_COLUMNS,
)
from taifa_projector.adapters.read_side_tables import credential_record as _credential_record
from taifa_projector.application.ports import BatchOutcome, CacheSnapshot
from taifa_projector.domain.fold import Event, ReadSideFold, owners_of
from taifa_projector.domain.log_positions import TopicPartitionKey
from taifa_projector.domain.model import (
    CREATING_EVENTS,
    CREDENTIAL_EVENTS,
    DOMAIN_EVENTS,
    AuthEntry,
    CredentialRow,
    DomainRow,
    SecretRow,
    newest_first,
    quarantined,
)

__all__ = ["KEPT_TABLES", "READ_SIDE_TABLES", "PostgresReadModelStore", "create_pool", "credential_rows"]


# A live batch's rows go by COPY (binary) into temporary tables of the session, shaped like the tables they are for,
# and from there into those tables with one INSERT ... SELECT each: asyncpg encodes a COPY's fields without the
# per-element checks of its array encoder (measured: 2,000 audit rows of 12 columns, client CPU 5.0 -> 3.1 us per
# row). The staging tables are emptied at each commit; a rollback takes their rows with it. Table -> staging table:
STAGING: Final = {
    "rm_smtp_credentials": "projector_credentials_in",
    "rm_credential_secrets": "projector_secrets_in",
    "rm_domains": "projector_domains_in",
    "projector_auth_entries": "projector_auth_in",
    audit_feed.TABLE: "projector_audit_in",
}
# One round trip per batch (a session keeps its temporary tables; "already exists" is only a notice).
CREATE_STAGING: Final = ";".join(
    f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    for table, staging in STAGING.items()
)


def _upsert_sql(table: str, columns: Sequence[str], key: str) -> str:
    """Upsert the rows staged for `table` (`STAGING`), each only over an older row."""
    names = ", ".join(columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != key)
    return (
        f"INSERT INTO {table} AS r ({names}) SELECT {names} FROM {STAGING[table]} "  # noqa: S608
        f"ON CONFLICT ({key}) DO UPDATE SET {updates} WHERE r.position < EXCLUDED.position"
    )


UPSERT_CREDENTIALS = _upsert_sql("rm_smtp_credentials", CREDENTIAL_COLUMNS, "credential_id")
UPSERT_DOMAINS = _upsert_sql("rm_domains", DOMAIN_COLUMNS, "domain_id")
# An entry at the same position that learnt its account's plan replaces one with the default (fold.newer_entry).
UPSERT_AUTH = _upsert_sql("projector_auth_entries", AUTH_COLUMNS, "username") + (
    " OR (r.position = EXCLUDED.position AND r.plan <> EXCLUDED.plan AND EXCLUDED.plan <> 'free')"
)
INSERT_AUDIT: Final = audit_feed.insert_from(STAGING[audit_feed.TABLE])
UPSERT_PLANS = (
    "INSERT INTO projector_account_plans (account_id, plan) SELECT * FROM unnest($1::uuid[], $2::text[]) "
    "ON CONFLICT (account_id) DO NOTHING"
)
UPSERT_SECRETS = _upsert_sql("rm_credential_secrets", SECRET_COLUMNS, "credential_id, secret_id")
# Every staged table into its table in ONE round trip (a simple query of several statements: an empty staging
# table inserts nothing), after every COPY of the batch. The audit feed goes last, as before.
WRITE_STAGED: Final = ";".join((UPSERT_CREDENTIALS, UPSERT_SECRETS, UPSERT_DOMAINS, UPSERT_AUTH, INSERT_AUDIT))
SELECT_SECRETS = f"SELECT {', '.join(SECRET_COLUMNS)} FROM rm_credential_secrets"  # noqa: S608
# Column lists are module constants, never input.
SELECT_CREDENTIALS = f"SELECT {', '.join(CREDENTIAL_COLUMNS)} FROM rm_smtp_credentials"  # noqa: S608
SELECT_DOMAINS = f"SELECT {', '.join(DOMAIN_COLUMNS)} FROM rm_domains"  # noqa: S608
SELECT_AUTH = f"SELECT {', '.join(AUTH_COLUMNS)} FROM projector_auth_entries"  # noqa: S608


def credential_rows(records: Iterable[Sequence[Any]], secrets: Iterable[Sequence[Any]]) -> list[CredentialRow]:
    """Credential rows as read (columns in CREDENTIAL_COLUMNS order) with their secrets, newest first."""
    by_credential: dict[UUID, list[SecretRow]] = {}
    for s in secrets:
        by_credential.setdefault(s[0], []).append(SecretRow(*s))
    rows = []
    for r in records:
        own = newest_first(by_credential.get(r[0], ()))
        rows.append(CredentialRow._make([*r[:13], tuple(r[13] or ()), r[14], r[15], own]))
    return rows


async def _stage(conn: asyncpg.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """COPY `rows` into the staging table of `table` (`STAGING`)."""
    await conn.copy_records_to_table(STAGING[table], records=rows, columns=columns)


@postgres_errors
async def create_pool(database_url: str, size: int) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=size, command_timeout=60)
    assert pool is not None
    return pool


class PostgresReadModelStore(RebuildStore):
    """Reads and writes the projector's tables through one asyncpg pool (`ports.ReadModelStore`; the
    rebuild's methods come from `postgres_rebuild.RebuildStore`)."""

    def __init__(self, pool: asyncpg.Pool, group_id: str) -> None:
        self.pool = pool
        self.group_id = group_id

    @postgres_errors
    async def answers(self) -> bool:
        """PostgreSQL answers a query within a second (readiness)."""
        async with self.pool.acquire(timeout=1) as conn:
            await conn.fetchval("SELECT 1")
        return True

    # --- offsets -----------------------------------------------------------------------------

    @postgres_errors
    async def load_offsets(self, partitions: Iterable[TopicPartitionKey] | None = None) -> dict[TopicPartitionKey, int]:
        """Recorded next offsets of this group (all of them, or those of `partitions`)."""
        rows = await self.pool.fetch(
            "SELECT topic, partition, next_offset FROM projector_offsets WHERE group_id = $1", self.group_id
        )
        recorded = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
        if partitions is None:
            return recorded
        return {tp: recorded[tp] for tp in partitions if tp in recorded}

    async def _record_offsets(
        self, conn: asyncpg.Connection, offsets: dict[TopicPartitionKey, int]
    ) -> dict[TopicPartitionKey, int]:
        """Record `offsets`; returns what was recorded for those partitions before (none: a new partition)."""
        if not offsets:
            return {}
        topics_, partitions, values = zip(*((t, p, o) for (t, p), o in offsets.items()), strict=True)
        rows = await conn.fetch(RECORD_OFFSETS, self.group_id, list(topics_), list(partitions), list(values))
        return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}

    # --- live batches ------------------------------------------------------------------------

    @postgres_errors
    async def apply_batch(
        self,
        events: Sequence[Event],
        offsets: dict[TopicPartitionKey, int],
        *,
        audit_rows: Sequence[AuditRow | None] | None = None,
    ) -> BatchOutcome:
        """Apply `events` (in arrival order) and record `offsets`, all in one transaction. `audit_rows` (each
        event's feed row, built while the batch was decoded) are taken when every event is new, as usual."""
        unique: dict[UUID, Event] = {}
        for event in events:
            unique.setdefault(event.event_id, event)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(CREATE_STAGING)
            seen_ids: set[UUID] = set()
            if unique:
                # Returns only the ids that were already recorded (usually none), not every inserted one.
                rows = await conn.fetch(RECORD_PROCESSED, list(unique), [e.position for e in unique.values()])
                seen_ids = {r["event_id"] for r in rows}
            if seen_ids:
                fresh = [e for e in unique.values() if e.event_id not in seen_ids]
                seen_before = [e for e in unique.values() if e.event_id in seen_ids]
            else:
                fresh, seen_before = list(unique.values()), []
            # Redelivered events load their username's committed entry too (`fold.cache_writes`).
            fold = await self._load_for(conn, fresh + seen_before)
            fold.apply_all(fresh)
            await self._write(conn, fold)
            if audit_rows is None or len(fresh) != len(events):  # a duplicate: only the new events' rows
                audit_rows = [audit_row(e) for e in fresh]
            feed = [row for row in audit_rows if row is not None]
            if feed:
                await _stage(conn, audit_feed.TABLE, audit_feed.COLUMNS, feed)
            await conn.execute(WRITE_STAGED)
            previous = await self._record_offsets(conn, offsets)
        return BatchOutcome(fresh, len(events) - len(fresh), fold, seen_before, previous)

    async def _load_for(self, conn: asyncpg.Connection, events: Sequence[Event]) -> ReadSideFold:
        """Lock and load every row `events` can touch."""
        fold = ReadSideFold()
        credential_set: set[UUID] = set()
        domain_set: set[UUID] = set()
        account_set: set[UUID] = set()  # accounts whose plan the batch needs
        new_accounts: set[UUID] = set()  # AccountCreated: their entries get the plan
        username_set: set[str] = set()
        creating_set: set[UUID] = set()
        for e in events:  # one pass: this runs for every event of every batch
            data = e.data
            kind = type(data)
            stream = data.stream_id()
            if kind in CREDENTIAL_EVENTS:
                credential_set.add(stream)
                username_set.add(str(getattr(data, "username", "")).lower())
                account = getattr(data, "account_id", None)
                if account is not None:
                    account_set.add(account)
            elif kind in DOMAIN_EVENTS:
                domain_set.add(stream)
            elif kind is AccountCreated:
                account_set.add(stream)
                new_accounts.add(stream)
            if kind in CREATING_EVENTS:
                creating_set.add(stream)
        credential_ids, domain_ids = list(credential_set), list(domain_set)
        usernames, creating = list(username_set), list(creating_set)
        if account_set:  # in key order, so two batches never wait on each other's second lock
            await lock_accounts(conn, account_set)
        if credential_ids:
            records = await conn.fetch(
                SELECT_CREDENTIALS + " WHERE credential_id = ANY($1::uuid[]) FOR UPDATE",
                credential_ids,
            )
            secrets = await conn.fetch(
                SELECT_SECRETS + " WHERE credential_id = ANY($1::uuid[])", [r[0] for r in records]
            ) if records else []  # fmt: skip
            for row in credential_rows(records, secrets):
                fold.credentials[row.credential_id] = row
                account_set.add(row.account_id)
        if domain_ids:
            for r in await conn.fetch(
                SELECT_DOMAINS + " WHERE domain_id = ANY($1::uuid[]) FOR UPDATE",
                domain_ids,
            ):
                fold.domains[r["domain_id"]] = DomainRow(*r)
        if usernames:
            for r in await conn.fetch(
                SELECT_AUTH + " WHERE username = ANY($1::text[]) FOR UPDATE",
                usernames,
            ):
                fold.auth[r["username"]] = AuthEntry(*r)
        if new_accounts:
            for r in await conn.fetch(
                SELECT_AUTH + " WHERE account_id = ANY($1::uuid[]) FOR UPDATE",
                list(new_accounts),
            ):
                fold.auth[r["username"]] = AuthEntry(*r)
        if account_set:
            for r in await conn.fetch(
                "SELECT account_id, plan FROM projector_account_plans WHERE account_id = ANY($1::uuid[])",
                list(account_set),
            ):
                fold.plans[r["account_id"]] = r["plan"]
        if creating:
            for r in await conn.fetch(
                "SELECT stream_id, position, envelope::text AS envelope FROM projector_parked_events "
                "WHERE stream_id = ANY($1::uuid[]) FOR UPDATE",
                creating,
            ):
                fold.parked.setdefault(r["stream_id"], {})[r["position"]] = decode(r["envelope"])
        return fold

    async def _write(self, conn: asyncpg.Connection, fold: ReadSideFold) -> None:
        """Write what the fold changed; the rows of the tables in `STAGING` are only staged here (`WRITE_STAGED`
        takes them in)."""
        if fold.changed_credentials:
            changed = [fold.credentials[i] for i in fold.changed_credentials]
            await _stage(conn, "rm_smtp_credentials", CREDENTIAL_COLUMNS, [_credential_record(row) for row in changed])
            secrets = [secret for row in changed for secret in row.secrets]
            if secrets:
                await _stage(conn, "rm_credential_secrets", SECRET_COLUMNS, secrets)
        if fold.changed_domains:
            domains = fold.domains
            await _stage(conn, "rm_domains", DOMAIN_COLUMNS, [domains[i] for i in fold.changed_domains])
        if fold.changed_plans:
            accounts = list(fold.changed_plans)
            await conn.execute(UPSERT_PLANS, accounts, [fold.plans[a] for a in accounts])
        if fold.changed_auth:
            auth = fold.auth
            await _stage(conn, "projector_auth_entries", AUTH_COLUMNS, [auth[u] for u in fold.changed_auth])
        if fold.unparked_streams:
            await conn.execute(
                "DELETE FROM projector_parked_events WHERE stream_id = ANY($1::uuid[])",
                list(fold.unparked_streams),
            )
        if fold.newly_parked:
            keys = list(fold.newly_parked)
            await conn.execute(
                "INSERT INTO projector_parked_events (stream_id, position, envelope) "
                "SELECT s, p, e::jsonb FROM unnest($1::uuid[], $2::bigint[], $3::text[]) AS t(s, p, e) "
                "ON CONFLICT DO NOTHING",
                [s for s, _ in keys],
                [p for _, p in keys],
                [json.dumps(envelope_to_json(fold.newly_parked[k])) for k in keys],
            )

    # --- the cache's source ------------------------------------------------------------------

    @postgres_errors
    async def auth_snapshot(self) -> CacheSnapshot:
        """Every auth entry (quarantine honoured), the domain owners, this group's offsets and the highest
        applied position, read from one consistent snapshot."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch(SELECT_AUTH)
            revoked = await self._quarantine(conn)
            domains = await conn.fetch(SELECT_DOMAINS + " WHERE status <> 'pending'")
            offsets = await conn.fetch(
                "SELECT topic, partition, next_offset FROM projector_offsets WHERE group_id = $1", self.group_id
            )
            # Pruning keeps the newest ids, so the maximum survives it.
            highest = await conn.fetchval("SELECT coalesce(max(position), 0) FROM projector_processed_events")
        return CacheSnapshot(
            entries=quarantined((AuthEntry(*r) for r in rows), revoked),
            owners=owners_of(DomainRow(*r) for r in domains),
            offsets={(r["topic"], r["partition"]): r["next_offset"] for r in offsets},
            highest_position=int(highest),
        )

    # --- quarantine (deactivations the read model refused) --------------------------------------

    @postgres_errors
    async def quarantine(self, revoked: dict[UUID, int]) -> None:
        """Record credentials whose deactivation was dead-lettered (credential id -> its position), in a
        transaction of its own; only a uuid and a bigint, which PostgreSQL cannot refuse."""
        if revoked:
            await self.pool.execute(
                "INSERT INTO projector_quarantined_credentials (credential_id, position) "
                "SELECT * FROM unnest($1::uuid[], $2::bigint[]) ON CONFLICT (credential_id) "
                "DO UPDATE SET position = greatest(projector_quarantined_credentials.position, EXCLUDED.position)",
                list(revoked),
                list(revoked.values()),
            )

    @postgres_errors
    async def credential_ids(self) -> set[UUID]:
        return {row[0] for row in await self.pool.fetch("SELECT credential_id FROM rm_smtp_credentials")}

    @postgres_errors
    async def quarantined_credentials(self) -> dict[UUID, int]:
        async with self.pool.acquire() as conn:
            return await self._quarantine(conn)

    @staticmethod
    async def _quarantine(conn: asyncpg.Connection) -> dict[UUID, int]:
        rows = await conn.fetch("SELECT credential_id, position FROM projector_quarantined_credentials")
        return {r["credential_id"]: r["position"] for r in rows}

    @postgres_errors
    async def active_entries_of_domain(self, domain_id: UUID) -> list[AuthEntry]:
        """The active auth entries of one domain (a dead-lettered deactivation that could not be decoded)."""
        rows = await self.pool.fetch(SELECT_AUTH + " WHERE domain_id = $1 AND active", domain_id)
        return [AuthEntry(*r) for r in rows]

    @postgres_errors
    async def prune_processed(self, below_position: int, chunk: int) -> int | None:
        """Forget up to `chunk` processed-event ids below `below_position`; None if another instance is pruning.

        Safe at any time: every write is conditional on position, so an event whose id was forgotten and that
        is delivered again changes nothing; it is only no longer counted as a duplicate.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", PRUNE_LOCK):
                return None
            status = await conn.execute(PRUNE_PROCESSED, below_position, chunk)
        return int(status.rsplit(" ", 1)[-1])

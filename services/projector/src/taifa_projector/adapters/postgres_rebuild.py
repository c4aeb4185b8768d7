"""The rebuild's side of the read-model store: fill new tables beside the live ones and swap them in.

`RebuildStore` is mixed into `postgres.PostgresReadModelStore` (the `ports.ReadModelStore` it implements),
so the live apply path and the rebuild's bulk load live in separate modules. Every method reports a
driver's failure as `StoreUnavailable` / `StoreRejected` (`driver_errors`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import asyncpg
from taifa_events import envelope_to_json
from taifa_events.audit import AuditRow

from taifa_projector.adapters import audit_feed, copy_timestamps, table_swap
from taifa_projector.adapters.driver_errors import postgres_errors
from taifa_projector.adapters.read_side_tables import (
    AUTH_COLUMNS,
    CREDENTIAL_COLUMNS,
    DOMAIN_COLUMNS,
    KEPT_TABLES,
    READ_SIDE_TABLES,
    SECRET_COLUMNS,
    credential_record,
)
from taifa_projector.adapters.usage_postgres import restore_last_use_sql
from taifa_projector.domain.fold import ReadSideFold
from taifa_projector.domain.log_positions import TopicPartitionKey

# Never lowers a recorded offset.
RAISE_OFFSETS = (
    "INSERT INTO projector_offsets AS o (group_id, topic, partition, next_offset) "
    "SELECT $1, * FROM unnest($2::text[], $3::int[], $4::bigint[]) "
    "ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now() "
    "WHERE o.next_offset < EXCLUDED.next_offset"
)


class RebuildStore:
    """The rebuild methods of `ports.ReadModelStore` (mixed into `PostgresReadModelStore`)."""

    pool: asyncpg.Pool
    group_id: str

    async def _record_offsets(
        self, conn: asyncpg.Connection, offsets: dict[TopicPartitionKey, int]
    ) -> dict[TopicPartitionKey, int]:
        raise NotImplementedError  # the live store's (postgres.PostgresReadModelStore)

    @postgres_errors
    async def replace_all(
        self,
        fold: ReadSideFold,
        processed: Sequence[tuple[UUID, int]],
        offsets: dict[TopicPartitionKey, int] | None,
        *,
        offsets_at_least: dict[TopicPartitionKey, int] | None = None,
        rows_sent: Callable[[], None] | None = None,
    ) -> None:
        """Replace the read side in one transaction: new tables filled beside the live ones, then swapped in.

        Readers of the live tables wait only for the swap (`adapters.table_swap`), never for the load;
        they see the old content or the new, never half. `offsets` (a Kafka rebuild) replace the group's
        offsets; `offsets_at_least` (an event-store rebuild past a retention gap) only raise them.
        `rows_sent` is called once the rows are in (PostgreSQL then builds the indexes on its own core).
        """
        # timestamptz values COPYed with the cheaper encoding (`copy_timestamps`: ~2.5 M in a 1 M-event rebuild).
        async with self.pool.acquire() as conn, copy_timestamps.fast_timestamps(conn), conn.transaction():
            shadows = await table_swap.create_shadows(conn, READ_SIDE_TABLES)
            await conn.copy_records_to_table(
                shadows.name("rm_smtp_credentials"), records=[credential_record(r) for r in fold.credentials.values()],
                columns=CREDENTIAL_COLUMNS,
            )  # fmt: skip
            await conn.copy_records_to_table(
                shadows.name("rm_credential_secrets"),
                records=[secret for row in fold.credentials.values() for secret in row.secrets],
                columns=SECRET_COLUMNS,
            )
            await conn.copy_records_to_table(
                shadows.name("rm_domains"), records=list(fold.domains.values()), columns=DOMAIN_COLUMNS
            )
            await conn.copy_records_to_table(
                shadows.name("projector_auth_entries"), records=list(fold.auth.values()), columns=AUTH_COLUMNS
            )
            await conn.copy_records_to_table(
                shadows.name("projector_account_plans"),
                records=list(fold.plans.items()),
                columns=("account_id", "plan"),
            )
            await conn.copy_records_to_table(
                shadows.name("projector_processed_events"), records=list(processed), columns=("event_id", "position")
            )
            parked = [
                (stream, position, json.dumps(envelope_to_json(event)))
                for stream, waiting in fold.parked.items()
                for position, event in waiting.items()
            ]
            if parked:
                await conn.executemany(
                    f"INSERT INTO {shadows.name('projector_parked_events')} (stream_id, position, envelope) "  # noqa: S608
                    "VALUES ($1, $2, $3::jsonb)",
                    parked,
                )
            await audit_feed.fill_shadow(conn, shadows.name(audit_feed.TABLE))
            if rows_sent is not None:
                rows_sent()
            # Usage is not in the event store: rm_usage_windows is kept, and the last use comes back from it.
            for statement in restore_last_use_sql(
                shadows.name("rm_smtp_credentials"), shadows.name("rm_credential_secrets")
            ):
                await conn.execute(statement)
            # Indexes and constraints built once the rows are in: several times faster than grown row by row.
            await table_swap.finish_shadows(conn, shadows)
            # Row writes before the swap takes its table locks, so those are held for the swap alone.
            if offsets is not None:
                await conn.execute("DELETE FROM projector_offsets WHERE group_id = $1", self.group_id)
                await self._record_offsets(conn, offsets)
            if offsets_at_least:
                await self._raise_offsets(conn, offsets_at_least)
            await table_swap.swap_in(conn, shadows)

    async def _raise_offsets(self, conn: asyncpg.Connection, offsets: dict[TopicPartitionKey, int]) -> None:
        topics_, partitions, values = zip(*((t, p, o) for (t, p), o in offsets.items()), strict=True)
        await conn.execute(RAISE_OFFSETS, self.group_id, list(topics_), list(partitions), list(values))

    @postgres_errors
    async def start_audit_staging(self) -> None:
        await audit_feed.start_staging(self.pool)

    @postgres_errors
    async def stage_audit(self, rows: Sequence[AuditRow]) -> None:
        await audit_feed.stage(self.pool, rows)

    # --- inspection --------------------------------------------------------------------------

    @postgres_errors
    async def sorted_rows(self, table: str, key: str) -> list[tuple[Any, ...]]:
        """Every row of a read-side table in key order (checksums, tests)."""
        assert table in READ_SIDE_TABLES or table in KEPT_TABLES
        return [tuple(r) for r in await self.pool.fetch(f"SELECT * FROM {table} ORDER BY {key}")]  # noqa: S608

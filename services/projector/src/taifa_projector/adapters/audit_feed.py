# ruff: noqa: S608 - SQL is built only from module constants (table and column names); values are bind parameters.
"""The audit feed in PostgreSQL (`rm_audit_events`, migration 0007; issue 17).

- Live: a batch's feed rows go in within the batch's transaction, COPied into the session's staging table and
  moved in by `insert_from` (the event batches, `adapters.postgres`), or with one statement of unnested arrays
  (`write_rows`: the quota notices of the usage topic, in the usage batch's transaction). Either way a redelivered
  event is the same key (account, time, id) and changes nothing (ON CONFLICT DO NOTHING).
- Rebuild: the rows are produced while the events are folded, a page at a time, and COPied into a staging table
  shaped like the shadow tables of `table_swap` (`start_staging` / `stage`), so a rebuild of millions of events
  never holds the feed in memory; `fill_shadow` then renames the staging table into the place of the empty shadow
  the swap puts in place (PostgreSQL does not copy the rows a second time: a 1 M-event rebuild spent 1.6 s on that
  copy), and adds the quota notices (not in the event store, so kept). A staging table left by a rebuild that
  failed or crashed is dropped by the next one's `start_staging`; the live table is never touched before the swap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import asyncpg
from taifa_events.audit import QUOTA_REACHED, AuditRow

from taifa_projector.adapters.copy_timestamps import fast_timestamps

TABLE: Final = "rm_audit_events"
STAGING: Final = "projector_audit_staging"
COLUMNS: Final = AuditRow._fields
_TYPES: Final = (
    "uuid",
    "uuid",
    "timestamptz",
    "bigint",
    "text",
    "text",
    "uuid",
    "text",
    "text",
    "text",
    "text",
    "text",
)
_NAMES: Final = ", ".join(COLUMNS)
# A feed row's key: a redelivered event's row is the same and changes nothing.
_ONCE: Final = "ON CONFLICT (account_id, occurred_at, id) DO NOTHING"

INSERT_ROWS: Final = (
    f"INSERT INTO {TABLE} ({_NAMES}) "
    f"SELECT {', '.join(COLUMNS[:-1])}, data::json FROM unnest("
    + ", ".join(f"${i}::{t}[]" for i, t in enumerate(_TYPES, start=1))
    + f") AS t({_NAMES}) {_ONCE}"
)


def insert_from(staging: str) -> str:
    """The statement that moves the feed rows staged in the table `staging` (the feed's columns) into the feed."""
    return f"INSERT INTO {TABLE} ({_NAMES}) SELECT {_NAMES} FROM {staging} {_ONCE}"


async def write_rows(conn: asyncpg.Connection, rows: Sequence[AuditRow]) -> None:
    """Insert the feed rows of one batch (one statement; nothing when there are none)."""
    if not rows:
        return
    await conn.execute(INSERT_ROWS, *(list(column) for column in zip(*rows, strict=True)))


async def start_staging(pool: asyncpg.Pool) -> None:
    """A new, empty staging table for a rebuild (a crashed rebuild's leftovers dropped)."""
    async with pool.acquire() as conn:
        await conn.execute(f"DROP TABLE IF EXISTS {STAGING}")
        # As `table_swap.create_shadows` makes a shadow: logged, the live table's columns, defaults and constraints.
        await conn.execute(f"CREATE TABLE {STAGING} (LIKE {TABLE} INCLUDING ALL EXCLUDING INDEXES)")


async def stage(pool: asyncpg.Pool, rows: Sequence[AuditRow]) -> None:
    """COPY a page of a rebuild's feed rows into the staging table."""
    if rows:
        async with pool.acquire() as conn, fast_timestamps(conn):  # occurred_at: the cheaper encoding
            await conn.copy_records_to_table(STAGING, records=rows, columns=COLUMNS)


async def fill_shadow(conn: asyncpg.Connection, shadow: str) -> None:
    """Fill the rebuilt table: the staged rows of the events (the staging table becomes `shadow`), plus the quota
    notices the live table holds."""
    if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", STAGING):
        await conn.execute(f"DROP TABLE {shadow}")
        await conn.execute(f"ALTER TABLE {STAGING} RENAME TO {shadow}")
    await conn.execute(
        f"INSERT INTO {shadow} ({_NAMES}) SELECT {_NAMES} FROM {TABLE} WHERE position = 0 AND type = $1",
        QUOTA_REACHED,
    )

"""The API's event store (the log of record) read for a rebuild: every event in position order.

One REPEATABLE READ, read-only transaction gives one consistent snapshot; pages are keyset pages by
position, and the next one is fetched while the caller folds this one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg

from taifa_projector.adapters.driver_errors import postgres_errors

# Each row as the envelope JSON `taifa_events.decode` reads, built by PostgreSQL (its CPU, not ours):
# decoding it is then one pass in pydantic-core instead of asyncpg's jsonb decode, a dict and a validation.
ENVELOPE_JSON = (
    "json_build_object('event_id', event_id, 'event_type', event_type, 'schema_version', schema_version, "
    "'stream_id', stream_id, 'stream_version', stream_version, 'position', position, "
    "'occurred_at', occurred_at, 'correlation_id', correlation_id, 'data', data, 'metadata', metadata)::text"
)
SELECT_PAGE = (
    f"SELECT position, event_type, schema_version, {ENVELOPE_JSON} AS envelope FROM event_store "  # noqa: S608 - constants
    "WHERE position > $1 ORDER BY position LIMIT $2"
)


class PostgresEventStoreReader:
    """`ports.EventStoreReader` over the `event_store` table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def pages(self, page_size: int) -> AsyncIterator[tuple[list[tuple[str, tuple[str, int]]], int]]:
        """([(envelope JSON text, (event_type, schema_version))], total events) per page, in position order, from
        one snapshot. The type and version columns spare `decode` parsing them from the text first (issue 18)."""
        with postgres_errors:
            async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                total = int(await conn.fetchval("SELECT count(*) FROM event_store"))
                rows = await conn.fetch(SELECT_PAGE, 0, page_size)
                while rows:
                    next_page = asyncio.create_task(conn.fetch(SELECT_PAGE, rows[-1]["position"], page_size))
                    await asyncio.sleep(0)  # let the query go out before the caller's CPU-bound fold
                    try:
                        yield [(row["envelope"], (row["event_type"], row["schema_version"])) for row in rows], total
                    except BaseException:
                        next_page.cancel()
                        await asyncio.gather(next_page, return_exceptions=True)
                        raise
                    rows = await next_page

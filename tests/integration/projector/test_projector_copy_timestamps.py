"""The rebuild's COPY timestamp encoding (adapters/copy_timestamps.py, issue 18) against asyncpg's own: the same
timestamptz values in PostgreSQL for aware datetimes of any offset and precision, naive ones (local time), the
extremes (infinity) and NULL; the connection reads with asyncpg's codec again after the block, also after an error.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone

import asyncpg
import pytest
from taifa_projector.adapters.copy_timestamps import decode, encode, fast_timestamps


def _values() -> list[datetime | date | None]:
    rng = random.Random(18)
    values: list[datetime | date | None] = [
        None,
        datetime.max,
        datetime.min,
        datetime(2000, 1, 1, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 11, 28, 10, 0, 0, 123456),  # naive: local time, as asyncpg reads it
        datetime(2026, 3, 29, 1, 30),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC).astimezone(timezone(timedelta(hours=-5))),
        datetime(1, 1, 1, 5, tzinfo=timezone(timedelta(hours=5))),
        date(2026, 11, 28),
    ]
    for _ in range(500):
        offset = timezone(timedelta(minutes=rng.randrange(-14 * 60, 14 * 60 + 1)))
        micros = rng.randrange(-(10**16), 10**16)
        values.append((datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)).astimezone(offset))
    return values


async def test_fast_timestamps_write_what_asyncpg_writes(isolated) -> None:
    values = _values()
    conn = await asyncpg.connect(isolated.database_url)
    try:
        await conn.execute("CREATE TABLE ts_plain (i int, t timestamptz)")
        await conn.execute("CREATE TABLE ts_fast (i int, t timestamptz)")
        records = list(enumerate(values))
        await conn.copy_records_to_table("ts_plain", records=records)
        async with fast_timestamps(conn):
            await conn.copy_records_to_table("ts_fast", records=records)
        compare = "SELECT p.i FROM ts_plain p JOIN ts_fast f USING (i) WHERE p.t IS DISTINCT FROM f.t"
        assert await conn.fetch(compare) == []
        assert await conn.fetchval("SELECT count(*) FROM ts_fast") == len(values)
        # The connection's own codec is back: what it reads is asyncpg's decoding.
        plain = [r["t"] for r in await conn.fetch("SELECT t FROM ts_fast ORDER BY i")]
        assert plain == [r["t"] for r in await conn.fetch("SELECT t FROM ts_plain ORDER BY i")]
        assert plain[1:3] == [datetime.max, datetime.min] and plain[3] == datetime(2000, 1, 1, tzinfo=UTC)
        # The tuple codec reads what asyncpg's reads.
        assert [None if v is None else decode(encode(v)) for v in values] == plain

        with pytest.raises(asyncpg.UndefinedTableError):
            async with fast_timestamps(conn), conn.transaction():
                await conn.copy_records_to_table("no_such_table", records=records)
        assert [r["t"] for r in await conn.fetch("SELECT t FROM ts_fast ORDER BY i")] == plain
    finally:
        await conn.close()

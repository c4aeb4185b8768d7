# ruff: noqa: S608 - SQL is built only from constant column lists; values are always bind parameters.
"""The PostgreSQL event store: append inside the caller's transaction, read in position order.

Positions are global and become visible in commit order: an append takes a transaction-level advisory
lock, so the next position is assigned only after the previous appender has committed (or rolled back),
and a reader that has seen position N can never later find a smaller one appear.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final
from uuid import UUID

import asyncpg
from taifa_events import Envelope, EventData, EventMetadata, decode, make_envelope
from taifa_events.envelope import data_to_json

APPEND_LOCK_KEY: Final = 0x7A1FA_0001  # pg_advisory_xact_lock key serialising appends
NOTIFY_CHANNEL: Final = "taifa_event_store"

_COLUMNS: Final = (
    "position, event_id, event_type, schema_version, stream_id, stream_version, topic, partition_key, "
    "occurred_at, correlation_id, data, metadata"
)


async def next_stream_version(connection: asyncpg.Connection, stream_id: UUID) -> int:
    current = await connection.fetchval(
        "SELECT coalesce(max(stream_version), 0) FROM event_store WHERE stream_id = $1", stream_id
    )
    return int(current) + 1


async def stream_head(pool: asyncpg.Pool, stream_id: UUID) -> tuple[UUID, int] | None:
    """The id and position of the newest event of `stream_id` (None: the stream has none)."""
    row = await pool.fetchrow(
        "SELECT event_id, position FROM event_store WHERE stream_id = $1 ORDER BY position DESC LIMIT 1", stream_id
    )
    return None if row is None else (row["event_id"], int(row["position"]))


async def append(
    connection: asyncpg.Connection,
    events: Sequence[EventData],
    *,
    correlation_id: str,
    metadata: EventMetadata | None = None,
) -> list[Envelope[Any]]:
    """Append `events` in the current transaction; returns their envelopes with positions. `metadata` (who, from
    where, which request) goes into every envelope and the `metadata` column.

    The caller has already taken the row locks its invariants need; the append lock comes last so it is
    held only for the short tail of the transaction. Stream versions are checked by the unique constraint.
    """
    if not connection.is_in_transaction():
        raise RuntimeError("append must run inside the command's transaction")
    await connection.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK_KEY)
    position = int(await connection.fetchval("SELECT coalesce(max(position), 0) FROM event_store"))
    stored: list[Envelope[Any]] = []
    versions: dict[UUID, int] = {}
    for data in events:
        stream_id = data.stream_id()
        version = versions.get(stream_id) or await next_stream_version(connection, stream_id)
        versions[stream_id] = version + 1
        position += 1
        envelope = make_envelope(
            data, stream_version=version, position=position, correlation_id=correlation_id, metadata=metadata
        )
        await connection.execute(
            f"INSERT INTO event_store ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            envelope.position,
            envelope.event_id,
            envelope.event_type,
            envelope.schema_version,
            envelope.stream_id,
            envelope.stream_version,
            envelope.topic,
            str(data.partition_key()),
            envelope.occurred_at,
            envelope.correlation_id,
            data_to_json(data),
            None if metadata is None else metadata.model_dump(mode="json"),
        )
        stored.append(envelope)
    # Delivered at commit only: the publisher wakes when the events are visible.
    await connection.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(position))
    return stored


def row_to_envelope(row: asyncpg.Record) -> Envelope[EventData]:
    """A stored row as the envelope `taifa_events.decode` builds (upcasting old schema versions)."""
    return decode(
        {
            "event_id": str(row["event_id"]),
            "event_type": row["event_type"],
            "schema_version": row["schema_version"],
            "stream_id": str(row["stream_id"]),
            "stream_version": row["stream_version"],
            "position": row["position"],
            "occurred_at": row["occurred_at"].isoformat(),
            "correlation_id": row["correlation_id"],
            "data": row["data"],
            "metadata": row["metadata"],
        }
    )


async def read_after(connection: asyncpg.Connection, position: int, limit: int) -> list[asyncpg.Record]:
    """Rows with a position greater than `position`, in position order."""
    return list(
        await connection.fetch(
            f"SELECT {_COLUMNS} FROM event_store WHERE position > $1 ORDER BY position LIMIT $2",
            position,
            limit,
        )
    )

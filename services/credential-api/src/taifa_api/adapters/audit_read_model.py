# ruff: noqa: S608 - SQL is built only from constants of this module; values are always bind parameters.
"""Queries of the projector's audit feed (`rm_audit_events`, one row per event customers see; issue 17); the API
only reads it. Keyset pages, newest first, on the table's `(account_id | subject_id, occurred_at, id)` indexes
(read backwards): a page starts strictly after the previous page's last entry, so new events never shift or repeat
entries.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import asyncpg

from taifa_api.domain.paging import Position

_COLUMNS = "id, type, occurred_at, actor_type, actor_id, source_ip, subject_type, subject_id, data"
_ORDER = "ORDER BY occurred_at DESC, id DESC"


async def feed(
    pool: asyncpg.Pool,
    account_id: UUID,
    *,
    subject_id: UUID | None = None,
    after: Position | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Up to `limit` entries of the account's feed (one subject's when `subject_id` is given), newest first."""
    where = ["account_id = $1"]
    args: list[object] = [account_id, limit]
    if subject_id is not None:
        args.append(subject_id)
        where.append(f"subject_id = ${len(args)}")
    if after is not None:
        args += [after.created_at, after.item_id]
        where.append(f"(occurred_at, id) < (${len(args) - 1}, ${len(args)})")
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM rm_audit_events WHERE {' AND '.join(where)} {_ORDER} LIMIT $2", *args
    )
    # `data` is a json column (not jsonb): asyncpg gives its text.
    return [{**row, "data": json.loads(row["data"])} for row in rows]

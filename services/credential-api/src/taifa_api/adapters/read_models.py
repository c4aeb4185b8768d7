# ruff: noqa: S608 - SQL is built only from constant column lists; values are always bind parameters.
"""Queries of the projector's read-model tables (`rm_smtp_credentials`, `rm_domains`); the API only reads them.

Lists are keyset pages, newest first, on the tables' `(account_id, created_at DESC, id DESC)` order: a page
starts strictly after the position of the previous page's last item, so inserts never shift or repeat items.
Released domains no longer exist for their account: they are left out of every domain query.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from taifa_api.domain.paging import Position

_CREDENTIAL_COLUMNS = "credential_id, domain_id, domain, username, is_active, created_at, deactivated_at"
_DOMAIN_COLUMNS = (
    "domain_id, name, status, status_reason, verification_name, verification_value, created_at, verified_at"
)
_LIVE_DOMAIN = "status <> 'released'"


async def _page(
    pool: asyncpg.Pool, sql: str, id_column: str, account_id: UUID, after: Position | None, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` rows of `sql` (which filters on account_id = $1) after `after`, newest first."""
    if after is None:
        rows = await pool.fetch(f"{sql} ORDER BY created_at DESC, {id_column} DESC LIMIT $2", account_id, limit)
    else:
        rows = await pool.fetch(
            f"{sql} AND (created_at, {id_column}) < ($3, $4) ORDER BY created_at DESC, {id_column} DESC LIMIT $2",
            account_id,
            limit,
            after.created_at,
            after.item_id,
        )
    return [dict(row) for row in rows]


async def list_credentials(
    pool: asyncpg.Pool, account_id: UUID, *, after: Position | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    sql = f"SELECT {_CREDENTIAL_COLUMNS} FROM rm_smtp_credentials WHERE account_id = $1"
    return await _page(pool, sql, "credential_id", account_id, after, limit)


async def list_domains(
    pool: asyncpg.Pool, account_id: UUID, *, after: Position | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    sql = f"SELECT {_DOMAIN_COLUMNS} FROM rm_domains WHERE account_id = $1 AND {_LIVE_DOMAIN}"
    return await _page(pool, sql, "domain_id", account_id, after, limit)


async def get_domain(pool: asyncpg.Pool, account_id: UUID, domain_id: UUID) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        f"SELECT {_DOMAIN_COLUMNS} FROM rm_domains WHERE domain_id = $1 AND account_id = $2 AND {_LIVE_DOMAIN}",
        domain_id,
        account_id,
    )
    return dict(row) if row else None

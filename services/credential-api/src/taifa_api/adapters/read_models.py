# ruff: noqa: S608 - SQL is built only from constant column lists; values are always bind parameters.
"""Queries of the projector's read-model tables (`rm_smtp_credentials`, `rm_credential_secrets`, `rm_domains`);
the API only reads them.

Lists are keyset pages, newest first, on the tables' `(account_id, created_at DESC, id DESC)` order: a page
starts strictly after the position of the previous page's last item, so inserts never shift or repeat items.
Released domains no longer exist for their account: they are left out of every domain query.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from taifa_api.domain.paging import Position

_CREDENTIAL_COLUMNS = (
    "credential_id, domain_id, domain, username, is_active, created_at, deactivated_at, status, suspended_at, "
    "suspension_reason, expires_at, allowed_cidrs, limit_messages_per_minute, limit_messages_per_day, "
    "last_used_at, last_used_ip"
)
# Valid secrets only (not revoked, grace not over), newest first: what a credential body lists, with the last use
# the projector applied from the usage topic.
_VALID_SECRETS = (
    "SELECT credential_id, secret_id, created_at, expires_at, last_used_at FROM rm_credential_secrets "
    "WHERE credential_id = ANY($1::uuid[]) AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) "
    "ORDER BY created_at DESC, secret_id DESC"
)
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


async def _with_secrets(pool: asyncpg.Pool, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each credential row gains `secrets`: its valid secrets, newest first."""
    if not rows:
        return rows
    by_credential: dict[UUID, list[dict[str, Any]]] = {row["credential_id"]: [] for row in rows}
    for secret in await pool.fetch(_VALID_SECRETS, list(by_credential)):
        by_credential[secret["credential_id"]].append(dict(secret))
    for row in rows:
        row["secrets"] = by_credential[row["credential_id"]]
    return rows


async def list_credentials(
    pool: asyncpg.Pool, account_id: UUID, *, after: Position | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    sql = f"SELECT {_CREDENTIAL_COLUMNS} FROM rm_smtp_credentials WHERE account_id = $1"
    return await _with_secrets(pool, await _page(pool, sql, "credential_id", account_id, after, limit))


async def get_credential(pool: asyncpg.Pool, account_id: UUID, credential_id: UUID) -> dict[str, Any] | None:
    """The account's credential with its valid secrets; None when unknown or another account's (the same)."""
    row = await pool.fetchrow(
        f"SELECT {_CREDENTIAL_COLUMNS} FROM rm_smtp_credentials WHERE credential_id = $1 AND account_id = $2",
        credential_id,
        account_id,
    )
    return (await _with_secrets(pool, [dict(row)]))[0] if row else None


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

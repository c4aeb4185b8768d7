# ruff: noqa: S608 - SQL is built only from constant column lists; values are always bind parameters.
"""Queries of the projector's read-model tables (`rm_smtp_credentials`, `rm_domains`); the API only reads them."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg


async def list_credentials(pool: asyncpg.Pool, account_id: UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT credential_id, domain_id, domain, username, is_active, created_at, deactivated_at "
        "FROM rm_smtp_credentials WHERE account_id = $1 ORDER BY created_at DESC, credential_id DESC",
        account_id,
    )
    return [dict(row) for row in rows]


_DOMAIN_COLUMNS = (
    "domain_id, name, status, status_reason, verification_name, verification_value, created_at, verified_at"
)


async def list_domains(pool: asyncpg.Pool, account_id: UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"SELECT {_DOMAIN_COLUMNS} FROM rm_domains WHERE account_id = $1 ORDER BY created_at DESC, domain_id DESC",
        account_id,
    )
    return [dict(row) for row in rows]


async def get_domain(pool: asyncpg.Pool, account_id: UUID, domain_id: UUID) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        f"SELECT {_DOMAIN_COLUMNS} FROM rm_domains WHERE domain_id = $1 AND account_id = $2",
        domain_id,
        account_id,
    )
    return dict(row) if row else None

"""SQL of revoked session JWTs (table `revoked_sessions`, keyed by the token's `jti`)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg


async def session_usable(conn: asyncpg.Connection | asyncpg.Pool, account_id: UUID, jti: str | None) -> bool:
    """The account exists and the token's `jti` (if any) is not revoked: one round trip, as before revocation
    existed, so a revocation holds from the next request on without any cache to expire."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM accounts WHERE account_id = $1) "
            "AND NOT EXISTS (SELECT 1 FROM revoked_sessions WHERE jti = $2)",
            account_id,
            jti,
        )
    )


async def insert_revocation(conn: asyncpg.Connection, jti: str, expires_at: datetime | None, now: datetime) -> bool:
    """Record the revocation (True if it is new); a repeated one keeps the later expiry, or none."""
    inserted = await conn.fetchval(
        "INSERT INTO revoked_sessions (jti, revoked_at, expires_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (jti) DO UPDATE SET expires_at = CASE "
        "  WHEN revoked_sessions.expires_at IS NULL OR EXCLUDED.expires_at IS NULL THEN NULL "
        "  ELSE greatest(revoked_sessions.expires_at, EXCLUDED.expires_at) END "
        "RETURNING (xmax = 0)",
        jti,
        now,
        expires_at,
    )
    return bool(inserted)


async def delete_expired(conn: asyncpg.Connection, expired_before: datetime) -> None:
    """Forget revocations of tokens that expired before `expired_before` (no clock accepts them any more)."""
    await conn.execute("DELETE FROM revoked_sessions WHERE expires_at IS NOT NULL AND expires_at < $1", expired_before)

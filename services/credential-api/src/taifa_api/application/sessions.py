"""Use case: revoke one session JWT by its `jti`, so the API refuses it from the next request on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from taifa_api.adapters import sessions
from taifa_api.domain.sessions import MAX_JTI_LENGTH


class InvalidJti(ValueError):
    """A `jti` no token could carry into the revocation table (empty, too long, control characters)."""


async def revoke_session(pool: asyncpg.Pool, jti: str, expires_at: datetime | None, leeway_seconds: int) -> bool:
    """True when the jti was not revoked before. `expires_at` (the token's `exp`) lets the row be deleted once
    no clock within the leeway could accept the token; without it the revocation is kept for good."""
    if not jti or len(jti) > MAX_JTI_LENGTH or not jti.isprintable():
        raise InvalidJti(f"jti must be 1 to {MAX_JTI_LENGTH} printable characters")
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    return await sessions.revoke(pool, jti, expires_at, now, timedelta(seconds=max(0, leeway_seconds) + 60))

"""Use case: revoke one session JWT by its `jti`, so the API refuses it from the next request on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from taifa_api.application.ports import Clock, UnitOfWorkFactory
from taifa_api.application.use_cases import utc_now
from taifa_api.domain.sessions import MAX_JTI_LENGTH, jti_well_formed


class InvalidJti(ValueError):
    """A `jti` no token could carry into the revocation table (empty, too long, control characters)."""


async def revoke_session(
    uow: UnitOfWorkFactory, jti: str, expires_at: datetime | None, leeway_seconds: int, *, clock: Clock = utc_now
) -> bool:
    """True when the jti was not revoked before. `expires_at` (the token's `exp`) lets the row be deleted once
    no clock within the leeway could accept the token; without it the revocation is kept for good.

    Revocations of tokens that expired more than the leeway (plus a minute) ago are deleted in the same
    transaction, so the table stays as small as the set of tokens that could still be presented.
    """
    if not jti_well_formed(jti):
        raise InvalidJti(f"jti must be 1 to {MAX_JTI_LENGTH} printable characters")
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    now = clock()
    grace = timedelta(seconds=max(0, leeway_seconds) + 60)
    async with uow() as work:
        inserted = await work.revoked_sessions.add(jti, expires_at, now)
        await work.revoked_sessions.delete_expired(now - grace)
        await work.commit()
    return inserted

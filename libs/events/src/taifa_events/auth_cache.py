"""The auth cache format (CONTRACT.md §3): written by the projector, read by the relay.

One Redis hash per SMTP username. A write applies only when its `position` is newer than the stored
one; a deactivation is a tombstone (`active` = 0) with a newer position, announced on
`REVOCATIONS_CHANNEL` so relays can drop live sessions at once. A missing entry means "no such
credential". `EPOCH_KEY` exists while the cache is complete: when Redis loses data (flush, restart
from an old snapshot) the projector sees the epoch missing or changed and rebuilds.
"""

from __future__ import annotations

from typing import Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

KEY_PREFIX = "taifa:auth:user:"
REVOCATIONS_CHANNEL = "taifa:auth:revocations"
EPOCH_KEY = "taifa:auth:epoch"

# Read-your-writes: once an event's effects are in both stores the projector sets
# `APPLIED_KEY_PREFIX + event_id` (with a TTL) and publishes the event id on APPLIED_CHANNEL.
APPLIED_CHANNEL = "taifa:projection:applied"
APPLIED_KEY_PREFIX = "taifa:projection:applied:"
# One key per event: the TTL only has to cover the API's bounded wait (TAIFA_API_PROJECTION_WAIT_SECONDS, at
# most this long), since the API checks the key right after it starts listening. An hour kept 3,600 s of
# events in Redis, beside the auth cache: 72 M keys (gigabytes) at 20,000 events/s; a minute keeps 1.2 M.
APPLIED_TTL_SECONDS = 60


def auth_key(username: str) -> str:
    """The Redis key of one username's entry (usernames are compared lowercase)."""
    return KEY_PREFIX + username.lower()


def applied_key(event_id: UUID | str) -> str:
    return f"{APPLIED_KEY_PREFIX}{event_id}"


class AuthCacheEntry(BaseModel):
    """One username's entry as stored in its Redis hash."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    credential_id: UUID
    account_id: UUID
    domain_id: UUID
    domain: str
    secret_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    hash_scheme: str
    active: bool
    position: int = Field(ge=1)

    def to_redis(self) -> dict[str, str]:
        """Flat string mapping for HSET."""
        return {
            "credential_id": str(self.credential_id),
            "account_id": str(self.account_id),
            "domain_id": str(self.domain_id),
            "domain": self.domain,
            "secret_hash": self.secret_hash,
            "hash_scheme": self.hash_scheme,
            "active": "1" if self.active else "0",
            "position": str(self.position),
        }

    @classmethod
    def from_redis(cls, mapping: dict[str, str] | dict[bytes, bytes]) -> Self | None:
        """Parse an HGETALL result; an empty or damaged entry reads as missing (fail closed)."""
        if not mapping:
            return None
        text = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in mapping.items()
        }
        try:
            return cls.model_validate({**text, "active": text.get("active") == "1"})
        except ValueError:
            return None

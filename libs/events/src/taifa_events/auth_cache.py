"""The auth cache format (docs/interfaces.md, "Redis"): written by the projector, read by the relay.

One Redis hash per SMTP username. A write applies only when its `position` is newer than the stored
one; a deactivation is a tombstone (`active` = 0) with a newer position, announced on
`REVOCATIONS_CHANNEL` so relays can drop live sessions at once. A missing entry means "no such
credential". `EPOCH_KEY` exists while the cache is complete: when Redis loses data (flush, restart
from an old snapshot) the projector sees the epoch missing or changed and rebuilds. While it repairs a
cache that fell behind (old snapshot), or after Redis refused one of its writes, the projector deletes the
epoch first, so relays treat the cache as unavailable until the rebuild sets a new epoch and then the
watermark. Revocations are published for every applied `CredentialDeactivated` (`revocation_message`).
"""

from __future__ import annotations

import json
from typing import NamedTuple, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

KEY_PREFIX = "taifa:auth:user:"
REVOCATIONS_CHANNEL = "taifa:auth:revocations"
EPOCH_KEY = "taifa:auth:epoch"
# The highest event position whose effects this cache holds. The projector raises it in the same Redis
# transaction as the entries it writes (never lowers it; a rebuild sets it last). A relay remembers the
# highest value it has read: a cache whose watermark went backwards (restarted from an old snapshot) or
# whose epoch is missing (flushed) is treated as unavailable (454, retry) until the projector repairs it,
# so a revoked credential never logs in again from stale data.
WATERMARK_KEY = "taifa:auth:watermark"
# Verified domain names and the account that holds each (`DOMAIN_OWNER_PREFIX + name` -> account id), kept
# by the projector from DomainVerified / DomainReleased. The relay reads them so that a credential for
# `example.com` cannot send as `mail.example.com` once another account has verified that subdomain.
# Format: a plain string, the owning account's UUID in canonical text (`str(uuid)`); no key = no account
# holds that name. Set on DomainVerified, deleted on DomainReleased (only while it still names the releasing
# account), both position-guarded with the position kept in a projector-only sibling key; rebuilt with the
# auth entries from the read model. A relay GETs `domain_owner_key(name)` for the name and each parent.
DOMAIN_OWNER_PREFIX = "taifa:auth:domain:"

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


def domain_owner_key(name: str) -> str:
    """The Redis key holding the account id that has verified domain `name` (compared lowercase)."""
    return DOMAIN_OWNER_PREFIX + name.rstrip(".").lower()


class Revocation(NamedTuple):
    """One message on REVOCATIONS_CHANNEL: `credential_id` None only for the seed's plain-username form."""

    username: str
    credential_id: str | None


def revocation_message(username: str, credential_id: UUID | str) -> str:
    """The message published when a credential is deactivated: sessions of that credential (not of a newer
    credential with the same username) are refused from then on."""
    return json.dumps({"username": username.lower(), "credential_id": str(credential_id)}, separators=(",", ":"))


def parse_revocation(message: str | bytes) -> Revocation | None:
    """Read a revocation message; a plain username (the seed's form) revokes every session of that name."""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    if not text.startswith("{"):
        return Revocation(text.strip().lower(), None) if text.strip() else None
    try:
        body = json.loads(text)
        username, credential_id = body["username"], body.get("credential_id")
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(username, str) or not username or not isinstance(credential_id, str | None):
        return None
    return Revocation(username.lower(), credential_id)


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

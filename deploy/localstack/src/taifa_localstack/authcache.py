"""Test and benchmark tooling: put a made-up SMTP credential straight into the auth cache, as the projector would.

Like the projector, every write takes a new position above the cache's watermark and raises the watermark, and
the cache epoch is set when missing: relays treat a cache without an epoch, or whose watermark went backwards,
as unavailable. A later state of a credential is announced with the projector's "credential changed" notice.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from taifa_events import hash_secret, new_secret
from taifa_events.auth_cache import (
    EPOCH_KEY,
    REVOCATIONS_CHANNEL,
    WATERMARK_KEY,
    AuthCacheEntry,
    CachedSecret,
    auth_key,
    change_message,
)
from taifa_events.secrets import new_smtp_password


@dataclass(frozen=True)
class SeededCredential:
    username: str
    password: str
    domain: str
    entry: AuthCacheEntry


def next_position(client: Any) -> int:
    """Set the cache epoch if missing and raise the watermark by one (sync redis client): the position of a write."""
    client.set(EPOCH_KEY, uuid.uuid4().hex, nx=True)
    return int(client.incr(WATERMARK_KEY))


def write_entry(client: Any, username: str, entry: AuthCacheEntry) -> None:
    """HSET an entry and (re)set the epoch; the entry's position must come from `next_position`."""
    client.hset(auth_key(username), mapping=entry.to_redis())
    client.set(EPOCH_KEY, uuid.uuid4().hex, nx=True)


def seed_credential(
    client: Any, domain: str | None = None, *, active: bool = True, username: str | None = None
) -> SeededCredential:
    """HSET one cache entry (sync redis client) for a new random password; returns what a client logs in with."""
    domain = domain or f"t{uuid.uuid4().hex[:10]}.example"
    password = new_secret()
    username = username or f"{secrets.token_hex(4)}@{domain}"
    entry = AuthCacheEntry(
        credential_id=uuid.uuid4(),
        account_id=uuid.uuid4(),
        domain_id=uuid.uuid4(),
        domain=domain,
        secret_hash=hash_secret(password),
        hash_scheme="sha256",
        active=active,
        position=next_position(client),
    )
    write_entry(client, username, entry)
    return SeededCredential(username, password, domain, entry)


def write_later_state(
    client: Any, username: str, entry: AuthCacheEntry, *, notify: bool = True, **changes: Any
) -> AuthCacheEntry:
    """Write a later state of `entry` (v2 fields: `secrets` newest first, `status`, `expires_at`,
    `allowed_cidrs`, `limits`) at a new position, as the projector does after a lifecycle event, then publish its
    "credential changed" notice (`notify=False`: as if the relay missed it); returns it. The seed's fields follow
    (`secret_hash`/`hash_scheme` = the newest secret's, `active` = not deactivated)."""
    secrets_now: tuple[CachedSecret, ...] = changes.get("secrets", entry.secrets)
    status = changes.get("status", entry.status)
    later = entry.model_copy(
        update={
            **changes,
            "secret_hash": secrets_now[0].hash,
            "hash_scheme": secrets_now[0].scheme,
            "active": status != "deactivated",
            "position": next_position(client),
        }
    )
    validated = AuthCacheEntry.model_validate(later.model_dump())  # model_copy does not validate
    write_entry(client, username, validated)
    if notify:
        client.publish(REVOCATIONS_CHANNEL, change_message(username, validated.credential_id))
    return validated


def rotate_secret(
    client: Any,
    username: str,
    entry: AuthCacheEntry,
    grace_seconds: float,
    *,
    now: float | None = None,
    notify: bool = True,
) -> tuple[str, AuthCacheEntry]:
    """Rotate as the API and projector would: a new `tmsmtp_` secret first, the previous newest one valid for
    `grace_seconds` more (0: retired at once). Returns the new password and the entry written."""
    password = new_smtp_password()
    expires = int((time.time() if now is None else now) + grace_seconds)
    newest = CachedSecret(id=uuid.uuid4(), hash=hash_secret(password), scheme="sha256")
    previous = entry.secrets[0].model_copy(update={"expires_at": expires})
    return password, write_later_state(client, username, entry, notify=notify, secrets=(newest, previous))

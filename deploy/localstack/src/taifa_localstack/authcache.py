"""Test and benchmark tooling: put a made-up SMTP credential straight into the auth cache, as the projector would.

Like the projector, every write takes a new position above the cache's watermark and raises the watermark, and
the cache epoch is set when missing: relays treat a cache without an epoch, or whose watermark went backwards,
as unavailable.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from taifa_events import hash_secret, new_secret
from taifa_events.auth_cache import EPOCH_KEY, WATERMARK_KEY, AuthCacheEntry, auth_key


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

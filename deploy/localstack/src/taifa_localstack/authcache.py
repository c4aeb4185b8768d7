"""Test and benchmark tooling: put a made-up SMTP credential straight into the auth cache, as the projector would."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from taifa_events import hash_secret, new_secret
from taifa_events.auth_cache import AuthCacheEntry, auth_key


@dataclass(frozen=True)
class SeededCredential:
    username: str
    password: str
    domain: str
    entry: AuthCacheEntry


def seed_credential(client: Any, domain: str | None = None, *, active: bool = True) -> SeededCredential:
    """HSET one cache entry (sync redis client) for a new random password; returns what a client logs in with."""
    domain = domain or f"t{uuid.uuid4().hex[:10]}.example"
    password = new_secret()
    username = f"{secrets.token_hex(4)}@{domain}"
    entry = AuthCacheEntry(
        credential_id=uuid.uuid4(),
        account_id=uuid.uuid4(),
        domain_id=uuid.uuid4(),
        domain=domain,
        secret_hash=hash_secret(password),
        hash_scheme="sha256",
        active=active,
        position=1,
    )
    client.hset(auth_key(username), mapping=entry.to_redis())
    return SeededCredential(username, password, domain, entry)

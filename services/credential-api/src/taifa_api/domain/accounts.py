"""Accounts and their API keys: each change returns the new state together with the event that records it."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from uuid import UUID, uuid4

from taifa_events import AccountCreated, ApiKeyIssued, ApiKeyRevoked, hash_secret

from taifa_api.domain import api_keys
from taifa_api.domain.models import AccountRecord, ApiKeyRecord, IssuedApiKey


def open_account(name: str, plan: str, now: datetime) -> tuple[AccountRecord, AccountCreated]:
    account = AccountRecord(account_id=uuid4(), name=name, plan=plan, created_at=now)
    return account, AccountCreated(account_id=account.account_id, name=name, plan=plan, created_at=now)


def issue_api_key(account_id: UUID, now: datetime) -> tuple[ApiKeyRecord, IssuedApiKey, ApiKeyIssued]:
    """A new key: the stored record holds only its hash; the plaintext exists once, in `IssuedApiKey`."""
    plaintext = api_keys.generate_api_key()
    key = ApiKeyRecord(
        key_id=uuid4(), account_id=account_id, key_hash=hash_secret(plaintext), revoked_at=None, created_at=now
    )
    event = ApiKeyIssued(account_id=account_id, key_id=key.key_id, created_at=now)
    return key, IssuedApiKey(key.key_id, account_id, plaintext), event


def revoke_api_key(key: ApiKeyRecord, now: datetime) -> tuple[ApiKeyRecord, ApiKeyRevoked | None]:
    """Revoked from `now` on; an already revoked key stays as it is and gives no event."""
    if key.revoked_at is not None:
        return key, None
    return replace(key, revoked_at=now), ApiKeyRevoked(account_id=key.account_id, key_id=key.key_id, revoked_at=now)

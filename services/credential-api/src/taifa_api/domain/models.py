"""Small immutable records of the command side's state (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


@dataclass(frozen=True)
class AccountRecord:
    account_id: UUID
    name: str
    plan: str
    created_at: datetime


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: UUID
    account_id: UUID
    key_hash: str
    revoked_at: datetime | None
    created_at: datetime | None = None  # not read back by the lookups that need only the hash and revocation


@dataclass(frozen=True)
class DomainRecord:
    domain_id: UUID
    account_id: UUID
    name: str
    status: str
    status_reason: str | None
    verification_name: str
    verification_value: str
    created_at: datetime
    verified_at: datetime | None
    released_at: datetime | None = None
    verification_checked_at: datetime | None = None
    verification_missing_since: datetime | None = None
    failure_recorded_at: datetime | None = None


@dataclass(frozen=True)
class CredentialRecord:
    credential_id: UUID
    account_id: UUID
    domain_id: UUID
    username: str
    is_active: bool
    created_at: datetime
    deactivated_at: datetime | None


@dataclass(frozen=True)
class NewCredential:
    """A freshly created credential: the only place the plaintext password exists, for the 201 response."""

    record: CredentialRecord
    domain: str
    password: str

    def __repr__(self) -> str:  # never print the password
        return f"NewCredential(record={self.record!r}, domain={self.domain!r}, password='***')"


@dataclass(frozen=True)
class IssuedApiKey:
    key_id: UUID
    account_id: UUID
    api_key: str

    def __repr__(self) -> str:
        return f"IssuedApiKey(key_id={self.key_id}, account_id={self.account_id}, api_key='***')"

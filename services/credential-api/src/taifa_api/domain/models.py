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
    # How the domain was last verified (`dns` | `operator`; None: before this was kept, read as `dns`). The daily
    # re-check looks up the TXT record of DNS-verified domains only.
    verification_method: str | None = None


@dataclass(frozen=True)
class CredentialRecord:
    """A credential's write-side state. `is_active` is False only once deactivated (a suspended credential is
    active: it keeps its domain's one slot and counts against the plan); `status` says which of the three."""

    credential_id: UUID
    account_id: UUID
    domain_id: UUID
    username: str
    is_active: bool
    created_at: datetime
    deactivated_at: datetime | None
    status: str = "active"
    suspended_at: datetime | None = None
    suspension_reason: str | None = None
    expires_at: datetime | None = None
    allowed_cidrs: tuple[str, ...] = ()
    messages_per_minute: int | None = None
    messages_per_day: int | None = None

    def event_subject(self) -> dict[str, UUID | str]:
        """The fields every credential event carries to name its credential (and its username's partition)."""
        return {
            "credential_id": self.credential_id,
            "account_id": self.account_id,
            "domain_id": self.domain_id,
            "username": self.username,
        }


@dataclass(frozen=True)
class SecretRecord:
    """One secret (password hash) of a credential, without the hash: the newest is the current one; an older one
    works until `expires_at` (its grace period) unless `revoked_at` ended it earlier."""

    secret_id: UUID
    credential_id: UUID
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class NewCredential:
    """A freshly created credential: the only place the plaintext password exists, for the 201 response."""

    record: CredentialRecord
    domain: str
    password: str
    secret: SecretRecord

    def __repr__(self) -> str:  # never print the password
        return f"NewCredential(record={self.record!r}, domain={self.domain!r}, password='***')"


@dataclass(frozen=True)
class CredentialState:
    """A credential as a lifecycle command leaves it: its record and its valid secrets, newest first."""

    record: CredentialRecord
    secrets: tuple[SecretRecord, ...]


@dataclass(frozen=True)
class RotatedCredential:
    """A rotation's result: the only place the new plaintext password exists, for the 201 response."""

    record: CredentialRecord
    secrets: tuple[SecretRecord, ...]  # newest first, the new one included
    password: str
    previous: SecretRecord  # the secret that was current, now with its grace period's end

    def __repr__(self) -> str:
        return f"RotatedCredential(record={self.record!r}, previous={self.previous!r}, password='***')"


@dataclass(frozen=True)
class IssuedApiKey:
    key_id: UUID
    account_id: UUID
    api_key: str

    def __repr__(self) -> str:
        return f"IssuedApiKey(key_id={self.key_id}, account_id={self.account_id}, api_key='***')"

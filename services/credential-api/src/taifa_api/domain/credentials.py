"""SMTP credential rules: the username, the generated password, who may create one; creation and deactivation.
The lifecycle after creation (rotation, suspension, restrictions) is in domain/lifecycle.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Final
from uuid import UUID, uuid4

from taifa_events import CredentialCreated, CredentialDeactivated, hash_secret
from taifa_events.secrets import initial_secret_id, new_smtp_password

from taifa_api.domain.errors import CredentialExists, CredentialLimitReached, DomainNotVerified
from taifa_api.domain.models import CredentialRecord, DomainRecord, NewCredential, SecretRecord
from taifa_api.domain.plans import may_add_active_credential

VERIFIED: Final = "verified"
PENDING: Final = "pending"
RELEASED: Final = "released"  # the account no longer holds the name; its credentials are deactivated

ACTIVE: Final = "active"
SUSPENDED: Final = "suspended"
DEACTIVATED: Final = "deactivated"


def username_for(account_id: UUID, domain: str) -> str:
    """First 8 characters of the account id, `@`, the domain name (docs/api.md)."""
    return f"{str(account_id)[:8]}@{domain}"


def new_password() -> str:
    """`tmsmtp_` + 43 base62 (>= 256 bits) + 6 base62 CRC32: scanners find it, the relay refuses typos unread."""
    return new_smtp_password()


def check_may_create_credential(
    *,
    domain_status: str,
    domain_has_active_credential: bool,
    plan: str,
    active_credentials: int,
    limits: dict[str, int],
) -> None:
    """Raise the business error that forbids a new credential, if any (checked under row locks)."""
    if domain_status != VERIFIED:
        raise DomainNotVerified()
    if domain_has_active_credential:
        raise CredentialExists()
    if not may_add_active_credential(plan, active_credentials, limits):
        raise CredentialLimitReached()


def create(account_id: UUID, domain: DomainRecord, now: datetime) -> tuple[NewCredential, CredentialCreated]:
    """The domain's new active credential (allowed by `check_may_create_credential`): the plaintext password is
    only in `NewCredential`, its hash only in the event (which the write side stores as well)."""
    password = new_password()
    credential_id = uuid4()
    # The first secret's id is the one derived from the credential id, as for credentials made before secrets
    # had ids (the write-side migration and the events' upcaster derive the same one).
    secret = SecretRecord(secret_id=initial_secret_id(credential_id), credential_id=credential_id, created_at=now)
    record = CredentialRecord(
        credential_id=credential_id,
        account_id=account_id,
        domain_id=domain.domain_id,
        username=username_for(account_id, domain.name),
        is_active=True,
        created_at=now,
        deactivated_at=None,
    )
    event = CredentialCreated(
        credential_id=record.credential_id,
        account_id=account_id,
        domain_id=domain.domain_id,
        domain=domain.name,
        username=record.username,
        secret_hash=hash_secret(password),
        created_at=now,
        secret_id=secret.secret_id,
    )
    return NewCredential(record=record, domain=domain.name, password=password, secret=secret), event


def deactivate(credential: CredentialRecord, now: datetime) -> tuple[CredentialRecord, CredentialDeactivated | None]:
    """Deactivated for good; an already inactive credential stays as it is and gives no event."""
    if not credential.is_active:
        return credential, None
    event = CredentialDeactivated(
        **credential.event_subject(),
        deactivated_at=now,
    )
    return replace(credential, is_active=False, status=DEACTIVATED, deactivated_at=now), event

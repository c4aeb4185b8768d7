"""SMTP credential rules: the username, the generated password, who may create one; creation and deactivation."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Final
from uuid import UUID, uuid4

from taifa_events import CredentialCreated, CredentialDeactivated, hash_secret, new_secret

from taifa_api.domain.errors import CredentialExists, CredentialLimitReached, DomainNotVerified
from taifa_api.domain.models import CredentialRecord, DomainRecord, NewCredential
from taifa_api.domain.plans import may_add_active_credential

VERIFIED: Final = "verified"
PENDING: Final = "pending"
RELEASED: Final = "released"  # the account no longer holds the name; its credentials are deactivated


def username_for(account_id: UUID, domain: str) -> str:
    """First 8 characters of the account id, `@`, the domain name (docs/api.md)."""
    return f"{str(account_id)[:8]}@{domain}"


def new_password() -> str:
    return new_secret()


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
    record = CredentialRecord(
        credential_id=uuid4(),
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
    )
    return NewCredential(record=record, domain=domain.name, password=password), event


def deactivate(credential: CredentialRecord, now: datetime) -> tuple[CredentialRecord, CredentialDeactivated | None]:
    """Deactivated for good; an already inactive credential stays as it is and gives no event."""
    if not credential.is_active:
        return credential, None
    event = CredentialDeactivated(
        credential_id=credential.credential_id,
        account_id=credential.account_id,
        domain_id=credential.domain_id,
        username=credential.username,
        deactivated_at=now,
    )
    return replace(credential, is_active=False, deactivated_at=now), event

"""SMTP credential rules: the username, the generated password, who may create one."""

from __future__ import annotations

from typing import Final
from uuid import UUID

from taifa_events import new_secret

from taifa_api.domain.errors import CredentialExists, CredentialLimitReached, DomainNotVerified
from taifa_api.domain.plans import may_add_active_credential

VERIFIED: Final = "verified"
PENDING: Final = "pending"
RELEASED: Final = "released"  # the account no longer holds the name; its credentials are deactivated


def username_for(account_id: UUID, domain: str) -> str:
    """First 8 characters of the account id, `@`, the domain name (CONTRACT.md §1)."""
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

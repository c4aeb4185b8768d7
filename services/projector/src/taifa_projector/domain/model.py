"""The read-model rows and auth-cache entries, and how one event changes them.

Every rule is conditional on the event's `position` (docs/architecture.md, the projector): an event at or below the
position a row already holds changes nothing, so duplicates and late arrivals are harmless. An event
that needs a row its stream has not created yet (a deactivation before its creation) is *parked* and
applied when the creating event arrives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Literal, NamedTuple
from uuid import UUID

from taifa_events import (
    CredentialCreated,
    DomainRegistered,
    DomainReleased,
    DomainVerificationFailed,
    DomainVerified,
    Envelope,
    EventData,
)

# The credential rules live in domain/credentials.py (issue 15); re-exported for the modules that import them here.
from taifa_projector.domain.credentials import (
    CREDENTIAL_EVENTS,
    TOMBSTONE_HASH,
    AuthEntry,
    CredentialRow,
    SecretRow,
    apply_credential_event,
    auth_entry_of,
    change_of,
    credential_row_from_created,
    newer_entry,
    newest_first,
    revocation_of,
    tombstone,
    tombstone_for,
    tombstone_of_event,
)

__all__ = [
    "CREDENTIAL_EVENTS",
    "TOMBSTONE_HASH",
    "AuthEntry",
    "CredentialRow",
    "SecretRow",
    "apply_credential_event",
    "auth_entry_of",
    "change_of",
    "credential_row_from_created",
    "newer_entry",
    "newest_first",
    "revocation_of",
    "tombstone",
    "tombstone_for",
    "tombstone_of_event",
]

DomainStatus = Literal["pending", "verified", "released"]
STATUS_PENDING: DomainStatus = "pending"
STATUS_VERIFIED: DomainStatus = "verified"
# Released (DomainReleased: by its owner, an operator, or a lost verification record) is final for that
# domain row: the API hides it (404), and the name may be registered and verified again under a new id.
STATUS_RELEASED: DomainStatus = "released"


# Rows and entries are named tuples: immutable values like frozen dataclasses, but built and compared in C
# (a frozen dataclass's __init__ cost 1.4 us against 0.4 us, paid for every event) and handed to asyncpg as
# they are, in column order.


class DomainRow(NamedTuple):
    """One row of `rm_domains`."""

    domain_id: UUID
    account_id: UUID
    name: str
    status: DomainStatus
    status_reason: str | None
    verification_name: str
    verification_value: str
    created_at: datetime
    verified_at: datetime | None
    position: int
    # Last, as migration 0004 appended the column (table, row type and tuple keep one column order).
    released_at: datetime | None = None


def quarantined(entries: Iterable[AuthEntry], revoked: Mapping[UUID, int]) -> list[AuthEntry]:
    """Entries with every quarantined credential (credential id -> position of its deactivation, recorded
    when that deactivation could not be applied to the read model) turned into a tombstone: a cache
    rebuilt from the read model never brings such a credential back."""
    return [
        tombstone_for(e, revoked[e.credential_id]) if e.active and e.credential_id in revoked else e for e in entries
    ]


# --- domains -----------------------------------------------------------------------------------


def apply_domain_event(row: DomainRow | None, event: Envelope[EventData]) -> DomainRow | None:
    """The row after `event`; None while the domain has no row (the event must then be parked)."""
    if row is not None and event.position <= row.position:
        return row
    data = event.data
    if type(data) is DomainRegistered:
        if row is not None:
            return row
        return DomainRow(
            domain_id=data.domain_id,
            account_id=data.account_id,
            name=data.name,
            status=STATUS_PENDING,
            status_reason=None,
            verification_name=data.verification_name,
            verification_value=data.verification_value,
            created_at=data.created_at,
            verified_at=None,
            position=event.position,
        )
    if row is None:
        return None
    if row.status == STATUS_RELEASED:
        # Final: nothing after the release changes the row (nor its position, which orders the name's owner).
        return row
    if type(data) is DomainVerified:
        return DomainRow(
            row.domain_id, row.account_id, row.name, STATUS_VERIFIED, None, row.verification_name,
            row.verification_value, row.created_at, data.verified_at, event.position,
        )  # fmt: skip
    if type(data) is DomainReleased:
        return row._replace(
            status=STATUS_RELEASED, status_reason=data.reason, released_at=data.released_at, position=event.position
        )
    if type(data) is DomainVerificationFailed:
        if row.status == STATUS_VERIFIED:
            # A failed re-check never un-verifies a domain; it only moves the position on.
            return row._replace(position=event.position)
        return row._replace(status_reason=data.reason, position=event.position)
    return row


class DomainOwner(NamedTuple):
    """What a domain row says about its name's owner key (`auth_cache.domain_owner_key`): `account_id` holds
    the name from `position` on (`holds`), or gave it up at `position`."""

    name: str
    account_id: UUID
    holds: bool
    position: int


def domain_owner_for(row: DomainRow) -> DomainOwner | None:
    """The owner-key change a domain row stands for: a verified row holds its name; a released row that had
    been verified gives it up; a pending row (or one released before it was ever verified) says nothing, so
    releasing another account's pending registration never touches the verified owner's key."""
    if row.status == STATUS_VERIFIED:
        return DomainOwner(row.name, row.account_id, True, row.position)
    if row.status == STATUS_RELEASED and row.verified_at is not None:
        return DomainOwner(row.name, row.account_id, False, row.position)
    return None


# --- routing -----------------------------------------------------------------------------------
# Exact classes (the event classes are final): `isinstance` against pydantic models goes through
# ABCMeta.__instancecheck__, a measurable share of a batch's CPU. Same for the rules above.

DOMAIN_EVENTS = frozenset({DomainRegistered, DomainVerified, DomainVerificationFailed, DomainReleased})
CREATING_EVENTS = frozenset({CredentialCreated, DomainRegistered})


def is_credential_event(event: Envelope[EventData]) -> bool:
    return type(event.data) in CREDENTIAL_EVENTS


def is_domain_event(event: Envelope[EventData]) -> bool:
    return type(event.data) in DOMAIN_EVENTS


def creates_stream(event: Envelope[EventData]) -> bool:
    return type(event.data) in CREATING_EVENTS

"""A domain's life: registered, verified (or a failed check), re-checked, released.

Each change returns the domain's new state together with the event that records it (or None when the change is
not worth an event), so what is stored and what is published cannot drift apart.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Literal
from uuid import UUID, uuid4

from taifa_events import DomainRegistered, DomainReleased, DomainVerificationFailed, DomainVerified, EventData

from taifa_api.domain import credentials, verification
from taifa_api.domain.models import CredentialRecord, DomainRecord
from taifa_api.domain.verification import Recheck

ReleaseReason = Literal["owner", "operator", "verification_lost"]
REASON_TAKEN = "the domain is verified by another account"
MAX_EVENT_REASON = 500  # DomainVerificationFailed.reason's bound; the stored status_reason keeps the whole text


def register(account_id: UUID, name: str, now: datetime) -> tuple[DomainRecord, DomainRegistered]:
    """A pending domain with a fresh verification record; `name` is already normalised."""
    domain = DomainRecord(
        domain_id=uuid4(),
        account_id=account_id,
        name=name,
        status=credentials.PENDING,
        status_reason=None,
        verification_name=verification.record_name(name),
        verification_value=verification.new_record_value(),
        created_at=now,
        verified_at=None,
    )
    event = DomainRegistered(
        domain_id=domain.domain_id,
        account_id=account_id,
        name=name,
        verification_name=domain.verification_name,
        verification_value=domain.verification_value,
        created_at=now,
    )
    return domain, event


def verify(
    domain: DomainRecord, now: datetime, method: Literal["dns", "operator"]
) -> tuple[DomainRecord, DomainVerified]:
    """Verified from `now` on; every trace of earlier failures and re-check clocks is cleared."""
    verified = replace(
        domain,
        status=credentials.VERIFIED,
        status_reason=None,
        verified_at=now,
        verification_checked_at=now,
        verification_missing_since=None,
        failure_recorded_at=None,
        verification_method=method,
    )
    event = DomainVerified(
        domain_id=domain.domain_id, account_id=domain.account_id, name=domain.name, verified_at=now, method=method
    )
    return verified, event


def fail_verification(
    domain: DomainRecord, reason: str, now: datetime
) -> tuple[DomainRecord, DomainVerificationFailed | None]:
    """The reason is stored every time; the event at most once an hour, or at once when the reason changes."""
    recorded = verification.should_record_failure(
        reason=reason,
        previous_reason=domain.status_reason,
        previous_recorded_at=domain.failure_recorded_at,
        now=now,
    )
    if not recorded:
        return replace(domain, status_reason=reason), None
    event = DomainVerificationFailed(
        domain_id=domain.domain_id, account_id=domain.account_id, reason=reason[:MAX_EVENT_REASON], checked_at=now
    )
    return replace(domain, status_reason=reason, failure_recorded_at=now), event


def record_recheck(domain: DomainRecord, decision: Recheck, now: datetime) -> DomainRecord:
    """The re-check's state (no event: one check a day per domain would be noise in the log)."""
    missing_since = {
        Recheck.CONFIRMED: None,
        Recheck.START_CLOCK: now,
        Recheck.STILL_MISSING: domain.verification_missing_since,
        Recheck.RELEASE: domain.verification_missing_since,
    }[decision]
    return replace(domain, verification_checked_at=now, verification_missing_since=missing_since)


def release(
    domain: DomainRecord, active_credentials: list[CredentialRecord], reason: ReleaseReason, now: datetime
) -> tuple[DomainRecord, list[CredentialRecord], list[EventData]]:
    """Released, with every active credential of the domain deactivated: the deactivations' events come first,
    then `DomainReleased`, so a consumer never sees a released domain with a live credential."""
    deactivated: list[CredentialRecord] = []
    events: list[EventData] = []
    for credential in active_credentials:
        stopped, event = credentials.deactivate(credential, now)
        deactivated.append(stopped)
        if event is not None:
            events.append(event)
    released = replace(domain, status=credentials.RELEASED, released_at=now)
    events.append(
        DomainReleased(
            domain_id=domain.domain_id, account_id=domain.account_id, name=domain.name, released_at=now, reason=reason
        )
    )
    return released, deactivated, events

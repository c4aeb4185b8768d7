"""The audit feed's records (CONTRACT §8, issue 17): which events customers see, and exactly which fields.

`audit_event(envelope)` turns an event of record into an `AuditEvent` (None for events that are not in the
feed, such as `ApiKeyIssued`); `audit_event_from_quota(record)` does the same for a quota notice of the usage
topic. `audit_row` / `audit_row_from_quota` give the same entry as the projection's plain row (cheaper: the
projector computes one per event). The feed's `data` is an ALLOW-list per type: a field reaches customers (and
webhooks) only when it is named here, so a secret hash added to an event later never leaks by default. Pure: no
I/O, no clock.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final, Literal, NamedTuple
from uuid import UUID, uuid5

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from taifa_events.envelope import Envelope, rfc3339
from taifa_events.metadata import (
    UNKNOWN_ACTOR,
    UNKNOWN_METADATA,
    Actor,
    ActorType,
    EventMetadata,
    metadata_or_unknown,
)
from taifa_events.usage import QuotaReached

__all__ = [
    "AUDIT_TYPES",
    "QUOTA_REACHED",
    "UNKNOWN_ACTOR",
    "Actor",
    "ActorType",
    "AuditEvent",
    "AuditRow",
    "AuditSubject",
    "EventMetadata",
    "audit_event",
    "audit_event_from_quota",
    "audit_event_of_row",
    "audit_row",
    "audit_row_from_quota",
    "metadata_or_unknown",
]

SubjectType = Literal["smtp_credential", "domain", "webhook"]


class AuditSubject(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: SubjectType
    id: UUID


class AuditEvent(BaseModel):
    """One entry of an account's audit feed. `account_id` and `position` are internal (never in `public_json`):
    the owner, and the event store position (0 for quota notices). The feed is ordered by (occurred_at, id)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: UUID
    type: str
    occurred_at: AwareDatetime
    actor: Actor
    source_ip: str | None = None
    subject: AuditSubject
    data: dict[str, Any] = Field(default_factory=dict)
    account_id: UUID
    position: int = Field(default=0, ge=0)

    def public_json(self) -> dict[str, Any]:
        """The §8 body: `{"id", "type", "occurred_at", "actor", "source_ip", "subject", "data"}`."""
        return {
            "id": str(self.id),
            "type": self.type,
            "occurred_at": rfc3339(self.occurred_at),
            "actor": {"type": self.actor.type, "id": self.actor.id},
            "source_ip": self.source_ip,
            "subject": {"type": self.subject.type, "id": str(self.subject.id)},
            "data": self.data,
        }


class _Rule:
    """How one event type appears in the feed: its contract name, its subject and the fields it shows."""

    __slots__ = ("audit_type", "fields", "include", "subject_field", "subject_type")

    def __init__(self, audit_type: str, subject_type: SubjectType, subject_field: str, fields: tuple[str, ...]):
        self.audit_type = audit_type
        self.subject_type: SubjectType = subject_type
        self.subject_field = subject_field
        self.fields = fields
        self.include: set[str] = set(fields)


_CREDENTIAL = ("credential_id", "domain_id", "username")


def _credential(name: str, *fields: str) -> _Rule:
    return _Rule(f"smtp_credential.{name}", "smtp_credential", "credential_id", (*_CREDENTIAL, *fields))


_WEBHOOK = ("webhook_id",)

# event_type -> rule. Never list secret_hash / hash_scheme / verification_value or anything like them.
_RULES: Final[dict[str, _Rule]] = {
    "CredentialCreated": _credential("created", "domain", "secret_id", "created_at"),
    "CredentialSecretRotated": _credential(
        "rotated", "secret_id", "previous_secret_id", "previous_secret_expires_at", "rotated_at"
    ),
    "CredentialSecretRevoked": _credential("secret_revoked", "secret_id", "revoked_at"),
    "CredentialSuspended": _credential("suspended", "reason", "suspended_at"),
    "CredentialResumed": _credential("resumed", "resumed_at"),
    "CredentialRestrictionsChanged": _credential(
        "restrictions_changed", "allowed_cidrs", "expires_at", "limits", "changed_at"
    ),
    "CredentialDeactivated": _credential("deactivated", "deactivated_at"),
    "DomainRegistered": _Rule("domain.created", "domain", "domain_id", ("domain_id", "name", "created_at")),
    "DomainVerified": _Rule("domain.verified", "domain", "domain_id", ("domain_id", "name", "method", "verified_at")),
    "DomainReleased": _Rule("domain.released", "domain", "domain_id", ("domain_id", "name", "reason", "released_at")),
    "WebhookEndpointCreated": _Rule("webhook.created", "webhook", "webhook_id", (*_WEBHOOK, "url", "events")),
    "WebhookSecretRotated": _Rule("webhook.secret_rotated", "webhook", "webhook_id", _WEBHOOK),
    "WebhookEndpointDeleted": _Rule("webhook.deleted", "webhook", "webhook_id", _WEBHOOK),
    "WebhookEndpointDisabled": _Rule("webhook.disabled", "webhook", "webhook_id", (*_WEBHOOK, "reason")),
}

QUOTA_REACHED: Final = "smtp_credential.quota_reached"
_QUOTA_FIELDS: Final = ("credential_id", "day", "percent", "count", "quota", "at")
_QUOTA_INCLUDE: Final = set(_QUOTA_FIELDS)
# The relay saw the crossing; no request caused it.
QUOTA_ACTOR: Final = Actor(type="system", id="relay")
# Deterministic ids for quota notices (redelivered or replayed notices are one feed entry).
_QUOTA_NAMESPACE: Final = UUID("6f1d0c43-5b7e-4f59-9a57-3d7f2f0c9a17")

# Every type the feed (and so the webhooks) may carry; webhooks subscribe to these or "*".
AUDIT_TYPES: Final[tuple[str, ...]] = (
    *(rule.audit_type for rule in _RULES.values() if rule.subject_type == "smtp_credential"),
    QUOTA_REACHED,
    *(rule.audit_type for rule in _RULES.values() if rule.subject_type != "smtp_credential"),
)


class AuditRow(NamedTuple):
    """An audit entry as plain values in the projection's column order (`rm_audit_events`): what the projector
    writes per event, cheaply (`data` is the allow-listed fields as JSON text, serialised by pydantic-core)."""

    id: UUID
    account_id: UUID
    occurred_at: datetime
    position: int
    type: str
    subject_type: str
    subject_id: UUID
    actor_type: str
    actor_id: str | None
    source_ip: str | None
    request_id: str | None
    data: str


def audit_row(envelope: Envelope[Any]) -> AuditRow | None:
    """The feed row of an event of record, or None when its type is not in the feed."""
    rule = _RULES.get(envelope.event_type)
    if rule is None:
        return None
    data = envelope.data
    metadata = envelope.metadata or UNKNOWN_METADATA
    return AuditRow(
        envelope.event_id,
        data.account_id,
        envelope.occurred_at,
        envelope.position,
        rule.audit_type,
        rule.subject_type,
        getattr(data, rule.subject_field),
        metadata.actor.type,
        metadata.actor.id,
        metadata.source_ip,
        metadata.request_id,
        data.model_dump_json(include=rule.include),
    )


def quota_event_id(record: QuotaReached) -> UUID:
    """The same notice (account, credential, UTC day, threshold) always gets the same id."""
    return uuid5(_QUOTA_NAMESPACE, f"{record.account_id}:{record.credential_id}:{record.day}:{record.percent}")


def audit_row_from_quota(record: QuotaReached) -> AuditRow:
    """`smtp_credential.quota_reached` for a quota notice of the usage topic (its subject: the credential)."""
    return AuditRow(
        quota_event_id(record),
        record.account_id,
        record.at,
        0,
        QUOTA_REACHED,
        "smtp_credential",
        record.credential_id,
        QUOTA_ACTOR.type,
        QUOTA_ACTOR.id,
        None,
        None,
        record.model_dump_json(include=_QUOTA_INCLUDE),
    )


def audit_event_of_row(row: AuditRow) -> AuditEvent:
    return AuditEvent(
        id=row.id,
        type=row.type,
        occurred_at=row.occurred_at,
        actor=Actor(type=row.actor_type, id=row.actor_id),
        source_ip=row.source_ip,
        subject=AuditSubject(type=row.subject_type, id=row.subject_id),
        data=json.loads(row.data),
        account_id=row.account_id,
        position=row.position,
    )


def audit_event(envelope: Envelope[Any]) -> AuditEvent | None:
    """The feed entry of an event of record, or None when its type is not in the feed."""
    row = audit_row(envelope)
    return None if row is None else audit_event_of_row(row)


def audit_event_from_quota(record: QuotaReached) -> AuditEvent:
    """`smtp_credential.quota_reached` for a quota notice of the usage topic (its subject: the credential)."""
    return audit_event_of_row(audit_row_from_quota(record))

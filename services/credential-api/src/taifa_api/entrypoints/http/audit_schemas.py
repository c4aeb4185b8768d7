"""Response models of the audit feed (CONTRACT §8, issue 17): explicit, so only the projection's allow-listed fields
ever leave (the feed's `data` never holds a secret or a hash: `taifa_events.audit` picks its fields per type)."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field
from taifa_events.audit import AUDIT_TYPES

from taifa_api.entrypoints.http.schemas import Timestamp


class ActorOut(BaseModel):
    """Who caused the event: an API key (its key id), a session (its `sub`, else the account id), an operator
    (`taifa-admin`, the OS user), Taifa itself (`system`), or `unknown` for events recorded before actors were."""

    type: Literal["api_key", "session", "operator", "system", "unknown"]
    id: str | None


class SubjectOut(BaseModel):
    type: Literal["smtp_credential", "domain", "webhook"]
    id: UUID


class AuditEventOut(BaseModel):
    id: UUID = Field(description="The event's id (stable: a webhook delivery of this event names the same one).")
    type: str = Field(json_schema_extra={"enum": list(AUDIT_TYPES)}, examples=["smtp_credential.created"])
    occurred_at: Timestamp
    actor: ActorOut
    source_ip: str | None = Field(description="The client address of the request that caused it (null if none).")
    subject: SubjectOut
    data: dict[str, Any] = Field(description="The event's fields for its type (docs/api.md); never a secret or hash.")


class AuditFeedOut(BaseModel):
    data: list[AuditEventOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null on the last page.")

"""Request and response models of `/v1/webhooks` (docs/api.md, "Webhooks"). Only the 201 bodies carry a secret."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from taifa_events.audit import AUDIT_TYPES

from taifa_api.domain.webhook_urls import MAX_URL_LENGTH
from taifa_api.domain.webhooks import ALL_EVENTS, WebhookEndpoint
from taifa_api.entrypoints.http.schemas import Timestamp

_EVENT_NAMES: list[JsonValue] = [ALL_EVENTS, *AUDIT_TYPES]


class WebhookCreateIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"url": "https://hooks.example.com/taifa", "events": ["smtp_credential.deactivated"]},
                {"url": "https://hooks.example.com/taifa", "events": ["*"]},
            ]
        },
    )

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="`https` URL that receives the deliveries; it may not resolve to a loopback, private, "
        "link-local or metadata address.",
    )
    events: list[str] = Field(
        min_length=1,
        max_length=len(_EVENT_NAMES),
        json_schema_extra={"items": {"type": "string", "enum": _EVENT_NAMES}},
        description='Audit event types to deliver, or `["*"]` for every type.',
    )


class WebhookOut(BaseModel):
    id: UUID
    url: str
    events: list[str]
    status: Literal["enabled", "disabled"] = Field(
        description="`disabled` after deliveries kept failing for about 3 days (nothing is delivered then)."
    )
    created_at: Timestamp
    previous_secret_expires_at: Timestamp | None = Field(
        description="After a rotation: until then the previous secret signs too (a second signature)."
    )
    disabled_at: Timestamp | None
    disabled_reason: str | None

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> WebhookOut:
        return cls(
            id=endpoint.webhook_id,
            url=endpoint.url,
            events=list(endpoint.events),
            status=endpoint.status,
            created_at=endpoint.created_at,
            previous_secret_expires_at=endpoint.previous_secret_expires_at,
            disabled_at=endpoint.disabled_at,
            disabled_reason=endpoint.disabled_reason,
        )


class WebhookWithSecretOut(WebhookOut):
    """The body of a creation or a rotation: the signing secret, shown only here."""

    secret: str = Field(description="`whsec_...`: verify the `webhook-signature` header with it. Shown only once.")


class WebhookAttemptOut(BaseModel):
    attempt: int = Field(description="1 for the first attempt.")
    started_at: Timestamp
    status_code: int | None = Field(description="The receiver's HTTP status; null when no response came.")
    latency_ms: int
    error: str | None = Field(description="Why the attempt failed without a response (timeout, refused address...).")
    response_excerpt: str | None = Field(description="The start of the response body (at most 200 characters).")


class WebhookDeliveryOut(BaseModel):
    id: UUID
    message_id: str = Field(description="The `webhook-id` header: the same on every attempt.")
    event_id: UUID
    event_type: str
    status: Literal["pending", "succeeded", "failed"]
    attempt_count: int
    next_attempt_at: Timestamp | None = Field(description="When the next attempt is due (pending only).")
    created_at: Timestamp
    last_attempt_at: Timestamp | None
    payload: dict[str, Any] = Field(description='The body delivered: `{"type", "timestamp", "data"}`.')
    attempts: list[WebhookAttemptOut] = Field(description="The newest attempts (at most 10), newest first.")

    @classmethod
    def of(cls, row: dict[str, Any]) -> WebhookDeliveryOut:
        return cls(
            id=row["id"],
            message_id=row["message_id"],
            event_id=row["event_id"],
            event_type=row["event_type"],
            status=row["status"],
            attempt_count=row["attempts"],
            next_attempt_at=row["next_attempt_at"] if row["status"] == "pending" else None,
            created_at=row["created_at"],
            last_attempt_at=row["last_attempt_at"],
            payload=row["payload"],
            attempts=[
                WebhookAttemptOut(**{k: v for k, v in a.items() if k != "delivery_id"}) for a in row["attempt_log"]
            ],
        )

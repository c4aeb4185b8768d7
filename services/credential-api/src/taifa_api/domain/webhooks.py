"""Webhook endpoints of an account: what they subscribe to, the per-account cap, and their lifecycle events.

Pure rules (no I/O, no clock, no randomness): the use cases (application/webhooks.py) bring the time, the new
endpoint id and the sealed secret, and store what these functions return.

- `events`: a non-empty list of audit types (`taifa_events.audit.AUDIT_TYPES`), or `["*"]` for all of them
  (also those added later). Duplicates are dropped, the order kept.
- At most `max_endpoints` endpoints per account (`TAIFA_WEBHOOK_MAX_ENDPOINTS_PER_ACCOUNT`, default 10).
- A rotation keeps the current secret valid for `PREVIOUS_SECRET_SECONDS` (24 h) as the previous one; rotating
  again within that time ends the older previous secret at once (at most two secrets sign).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final, Literal
from uuid import UUID

from taifa_events.audit import AUDIT_TYPES
from taifa_events.events import WebhookEndpointCreated, WebhookEndpointDeleted, WebhookSecretRotated

from taifa_api.domain.errors import CommandRefused, InvalidRequest

ALL_EVENTS: Final = "*"
DEFAULT_MAX_ENDPOINTS: Final = 10
PREVIOUS_SECRET_SECONDS: Final = 86400
ENABLED: Final = "enabled"
DISABLED: Final = "disabled"
WEBHOOK_LIMIT_REACHED: Final = "webhook_limit_reached"

WebhookStatus = Literal["enabled", "disabled"]


class WebhookLimitReached(CommandRefused):
    code = WEBHOOK_LIMIT_REACHED
    message = "The account has as many webhook endpoints as it may have; delete one first."


@dataclass(frozen=True)
class WebhookEndpoint:
    """An endpoint as the API shows it. Its secrets (ciphertexts) are stored beside it, never carried here."""

    webhook_id: UUID
    account_id: UUID
    url: str
    events: tuple[str, ...]
    status: WebhookStatus
    created_at: datetime
    previous_secret_expires_at: datetime | None = None
    disabled_at: datetime | None = None
    disabled_reason: str | None = None


def subscribed_events(requested: Sequence[str]) -> tuple[str, ...]:
    """The events an endpoint receives, checked; InvalidRequest (422) names the position, never the value."""
    if not requested:
        raise InvalidRequest('events: give at least one event type, or ["*"] for all')
    if ALL_EVENTS in requested:
        if any(item != ALL_EVENTS for item in requested):
            raise InvalidRequest('events: "*" subscribes to every type and cannot be combined with others')
        return (ALL_EVENTS,)
    known = set(AUDIT_TYPES)
    for position, item in enumerate(requested):
        if item not in known:
            raise InvalidRequest(f"events[{position}]: not a known event type (see the list in the API reference)")
    return tuple(dict.fromkeys(requested))


def check_may_add(existing_endpoints: int, max_endpoints: int) -> None:
    if existing_endpoints >= max_endpoints:
        raise WebhookLimitReached()


def create(
    webhook_id: UUID, account_id: UUID, url: str, events: tuple[str, ...], now: datetime
) -> tuple[WebhookEndpoint, WebhookEndpointCreated]:
    endpoint = WebhookEndpoint(webhook_id, account_id, url, events, ENABLED, now)
    return endpoint, WebhookEndpointCreated(account_id=account_id, webhook_id=webhook_id, url=url, events=list(events))


def rotate(endpoint: WebhookEndpoint, now: datetime) -> tuple[WebhookEndpoint, WebhookSecretRotated]:
    """The endpoint after a rotation: the secret it had signs until the returned `previous_secret_expires_at`."""
    rotated = replace(endpoint, previous_secret_expires_at=now + timedelta(seconds=PREVIOUS_SECRET_SECONDS))
    return rotated, WebhookSecretRotated(account_id=endpoint.account_id, webhook_id=endpoint.webhook_id)


def delete(endpoint: WebhookEndpoint) -> WebhookEndpointDeleted:
    return WebhookEndpointDeleted(account_id=endpoint.account_id, webhook_id=endpoint.webhook_id)


def previous_secret_valid(endpoint: WebhookEndpoint, now: datetime) -> bool:
    return endpoint.previous_secret_expires_at is not None and endpoint.previous_secret_expires_at > now

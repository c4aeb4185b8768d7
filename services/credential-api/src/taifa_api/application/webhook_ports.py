"""What the webhook dispatcher (`taifa-webhooks`, issue 17) needs from the outside world: the delivery store
(PostgreSQL: endpoints, deliveries, attempts, the consumer's offsets), the HTTP sender that connects only to an
address it checked, and the Standard Webhooks signer. Adapters implement them (adapters/webhook_store.py,
adapters/webhook_http.py, adapters/webhook_signing.py); the tests use the real ones or small fakes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from taifa_api.domain.webhook_delivery import ClaimCandidate


@dataclass(frozen=True)
class FeedEvent:
    """An audit event as the dispatcher turns it into deliveries: whose it is, and the §8 body to send."""

    event_id: UUID
    account_id: UUID
    event_type: str
    occurred_at: datetime
    payload: dict[str, Any]  # {"type", "timestamp", "data"}


@dataclass(frozen=True)
class Subscription:
    """An enabled endpoint of an account, as far as matching events goes."""

    webhook_id: UUID
    account_id: UUID
    events: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True)
class NewDelivery:
    id: UUID
    webhook_id: UUID
    account_id: UUID
    message_id: str
    event_id: UUID
    event_type: str
    occurred_at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class DueDelivery:
    """A claimed delivery with what sending it needs. `secrets` are the endpoint's signing secrets in clear, the
    current one first (two during a rotation's 24 h); they live only in memory, never in a log or an error."""

    id: UUID
    webhook_id: UUID
    account_id: UUID
    message_id: str
    event_type: str
    occurred_at: datetime
    payload: dict[str, Any]
    attempts: int  # attempts made before this one
    url: str
    secrets: tuple[str, ...]

    def __repr__(self) -> str:  # the dataclass repr would show the secrets
        return f"DueDelivery(id={self.id}, webhook_id={self.webhook_id}, attempts={self.attempts})"


@dataclass(frozen=True)
class SendResult:
    """How one HTTP attempt ended: a status code (any, 3xx included), or an error (refused address, timeout...)."""

    status_code: int | None
    latency_ms: int
    error: str | None = None
    body_excerpt: str | None = None
    refused: bool = False  # the address was forbidden: nothing was sent


@dataclass(frozen=True)
class AttemptOutcome:
    """What an attempt leaves in the store. `next_attempt_at` None with `delivered` False: the schedule is spent
    (the delivery fails, the endpoint is disabled)."""

    delivery_id: UUID
    webhook_id: UUID
    account_id: UUID
    attempt: int
    started_at: datetime
    result: SendResult
    delivered: bool
    next_attempt_at: datetime | None


class DeliveryStore(Protocol):
    async def subscriptions(self, account_ids: Sequence[UUID]) -> list[Subscription]:
        """The enabled endpoints of these accounts."""

    async def record(self, deliveries: Sequence[NewDelivery], next_offsets: Mapping[tuple[str, int], int]) -> int:
        """Insert `deliveries` (an existing (endpoint, event) pair is left alone) and move the consumer's offsets
        forward, in one transaction; returns how many deliveries are new."""

    async def load_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The next offset to read of each partition that has one recorded."""

    async def claim_due(
        self,
        limit: int,
        busy: Sequence[UUID],
        lease_seconds: float,
        choose: Callable[[Sequence[ClaimCandidate]], Sequence[ClaimCandidate]] | None = None,
    ) -> list[DueDelivery]:
        """At most `limit` due pending deliveries, at most one per endpoint and none of the `busy` endpoints, each
        leased for `lease_seconds` (not due again before, so another dispatcher does not send it meanwhile).
        `choose` picks among the due candidates, oldest due first (a few more than `limit`); without it, the
        oldest `limit`."""

    async def claim_next_of(self, webhook_id: UUID, lease_seconds: float) -> DueDelivery | None:
        """The endpoint's oldest due pending delivery, leased; None when it has none due (or another holds it)."""

    async def finish(self, outcome: AttemptOutcome, disabled_reason: str) -> bool:
        """Record the attempt and the delivery's new state; when the schedule is spent, fail the delivery and
        disable its endpoint with a `WebhookEndpointDisabled` event, in the same transaction. True when this
        attempt disabled the endpoint."""


class WebhookSender(Protocol):
    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> SendResult:
        """POST `body` to `url` from an address checked at this moment; never raises for a network failure."""


class Signer(Protocol):
    def headers(self, message_id: str, timestamp: datetime, body: bytes, secrets: Sequence[str]) -> dict[str, str]:
        """The Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`)."""

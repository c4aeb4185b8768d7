# ruff: noqa: S608 - SQL is built only from constant fragments of this module; values are always bind parameters.
"""The webhook dispatcher's PostgreSQL side (`application.webhook_ports.DeliveryStore`): endpoints, deliveries,
attempts and the consumer's offsets (migration 0006).

- `record`: deliveries and the offsets after the records they came from, in one transaction; the unique key
  (webhook_id, event_id) makes a redelivered record (a crash before the offsets, a replay) change nothing.
- `claim_due`: due pending deliveries, the oldest of each endpoint only, none of the endpoints this process is
  already sending to, those the caller chooses among them locked with SKIP LOCKED (another dispatcher takes other
  rows) and leased: their `next_attempt_at` moves to the end of the lease, so a dispatcher that dies mid-attempt
  lets them come due again.
- `finish`: the attempt row, the delivery's new state and, when its schedule is spent and the endpoint delivered
  nothing since that delivery was created, the endpoint disabled with a `WebhookEndpointDisabled` event appended
  to the event store (published by the API's outbox), atomically.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import asyncpg
from taifa_events import Actor, EventMetadata
from taifa_events.events import WebhookEndpointDisabled

from taifa_api.adapters import event_store
from taifa_api.adapters.webhook_secrets import WebhookKeyError, WebhookSecretBox
from taifa_api.application.webhook_ports import AttemptOutcome, DueDelivery, NewDelivery, Subscription
from taifa_api.domain import webhook_delivery as rules
from taifa_api.domain.webhook_delivery import ClaimCandidate

log = logging.getLogger(__name__)

SUBSCRIPTIONS = """
SELECT id, account_id, events, created_at FROM webhook_endpoints
WHERE account_id = ANY($1::uuid[]) AND status = 'enabled'
"""
INSERT_DELIVERIES = """
INSERT INTO webhook_deliveries (id, webhook_id, account_id, message_id, event_id, event_type, payload, status,
                                attempts, next_attempt_at, created_at)
SELECT u.id, u.webhook_id, u.account_id, u.message_id, u.event_id, u.event_type, u.payload::jsonb, 'pending',
       0, now(), now()
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::uuid[], $6::text[], $7::text[])
     AS u(id, webhook_id, account_id, message_id, event_id, event_type, payload)
JOIN webhook_endpoints e ON e.id = u.webhook_id AND e.status = 'enabled'
ON CONFLICT DO NOTHING
"""
SAVE_OFFSETS = """
INSERT INTO webhook_consumer_offsets (topic, partition, next_offset)
SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])
ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset
"""
LOAD_OFFSETS = """
SELECT o.topic, o.partition, o.next_offset FROM webhook_consumer_offsets o
JOIN unnest($1::text[], $2::int[]) AS p(topic, partition) ON o.topic = p.topic AND o.partition = p.partition
"""
# Lease the `locked` rows (not due again until the lease ends) and return what sending them needs.
_LEASE = """
UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $LEASE)
FROM locked, webhook_endpoints e
WHERE d.id = locked.id AND e.id = d.webhook_id AND e.status = 'enabled'
RETURNING d.id, d.webhook_id, d.account_id, d.message_id, d.event_type, d.payload, d.attempts, d.created_at,
          e.url, e.secret_ciphertext, e.previous_secret_ciphertext,
          (e.previous_secret_expires_at IS NOT NULL AND e.previous_secret_expires_at > now()) AS previous_signs
"""
# The oldest pending delivery of each endpoint (a skip scan over the per-endpoint partial index: one probe per
# endpoint with pending deliveries, however many rows they hold), kept when due, its endpoint enabled (a disabled
# endpoint's old rows never take the places of others) and not busy here, oldest first. Not locked: the caller
# chooses among them (`domain.webhook_delivery.choose_claims`), then LEASE_CHOSEN locks and leases its choice.
CLAIM_CANDIDATES = """
WITH RECURSIVE endpoints AS (
    (SELECT webhook_id FROM webhook_deliveries WHERE status = 'pending' ORDER BY webhook_id LIMIT 1)
    UNION ALL
    SELECT (SELECT d.webhook_id FROM webhook_deliveries d
            WHERE d.status = 'pending' AND d.webhook_id > endpoints.webhook_id ORDER BY d.webhook_id LIMIT 1)
    FROM endpoints WHERE endpoints.webhook_id IS NOT NULL
)
SELECT first.id, endpoints.webhook_id, e.account_id FROM endpoints
CROSS JOIN LATERAL (
    SELECT d.id, d.next_attempt_at FROM webhook_deliveries d
    WHERE d.webhook_id = endpoints.webhook_id AND d.status = 'pending'
    ORDER BY d.next_attempt_at, d.created_at LIMIT 1
) first
JOIN webhook_endpoints e ON e.id = endpoints.webhook_id AND e.status = 'enabled'
WHERE endpoints.webhook_id IS NOT NULL AND NOT (endpoints.webhook_id = ANY($1::uuid[]))
  AND first.next_attempt_at <= now()
ORDER BY first.next_attempt_at
LIMIT $2
"""
# Lock the chosen rows no other dispatcher holds (still pending and due), and lease them.
LEASE_CHOSEN = """
WITH locked AS (
    SELECT d.id FROM webhook_deliveries d
    WHERE d.id = ANY($1::uuid[]) AND d.status = 'pending' AND d.next_attempt_at <= now()
    FOR UPDATE OF d SKIP LOCKED
)""" + _LEASE.replace("$LEASE", "$2")
# Candidates read per claim beyond the slots to fill: room for the choice to pass over some.
CANDIDATES_BEYOND = 32

# The next due delivery of one endpoint (its sender just finished one): one probe of the per-endpoint index.
CLAIM_NEXT_OF = """
WITH locked AS (
    SELECT d.id FROM webhook_deliveries d
    WHERE d.webhook_id = $1 AND d.status = 'pending' AND d.next_attempt_at <= now()
    ORDER BY d.next_attempt_at, d.created_at
    LIMIT 1
    FOR UPDATE OF d SKIP LOCKED
)""" + _LEASE.replace("$LEASE", "$2")

# An attempt that leaves the delivery pending or succeeded: its row and the delivery's new state in one statement
# (atomic without a transaction block: one round trip). None when the delivery is gone or no longer pending.
FINISH = """
WITH delivery AS (
    UPDATE webhook_deliveries SET attempts = $2, last_attempt_at = $3, status = $4, next_attempt_at = $5
    WHERE id = $1 AND status = 'pending'
    RETURNING id
)
INSERT INTO webhook_attempts (delivery_id, attempt, started_at, status_code, latency_ms, error, response_excerpt)
SELECT id, $2, $3, $6, $7, $8, $9 FROM delivery
ON CONFLICT DO NOTHING
RETURNING delivery_id
"""
DISABLE_ENDPOINT = """
UPDATE webhook_endpoints SET status = 'disabled', disabled_at = now(), disabled_reason = $2
WHERE id = $1 AND status = 'enabled'
RETURNING account_id
"""
# A delivery whose schedule is spent disables its endpoint only when the endpoint delivered nothing meanwhile: one
# payload it keeps refusing (a 400 for one event type) must not stop a receiver that takes everything else. Any
# delivery that succeeded after the failed one was created counts, an older one's retry included; only deliveries
# created at most a whole schedule ($3 seconds) before it could, which bounds the per-endpoint index's range.
DELIVERED_SINCE = """
WITH failed AS (SELECT created_at FROM webhook_deliveries WHERE id = $2)
SELECT EXISTS (
    SELECT 1 FROM webhook_deliveries d, failed
    WHERE d.webhook_id = $1 AND d.status = 'succeeded' AND d.last_attempt_at >= failed.created_at
      AND d.created_at >= failed.created_at - make_interval(secs => $3)
)
"""
# The longest a delivery's schedule can last (every pause stretched by the jitter), plus a lease's margin.
SCHEDULE_BOUND_SECONDS = rules.schedule_span().total_seconds() * (1 + rules.JITTER) + 3600
FAIL_PENDING = """
UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL WHERE webhook_id = $1 AND status = 'pending'
"""

DISPATCHER_ACTOR = "taifa-webhooks"
# The audit feed shows a disabled endpoint as done by the dispatcher (actor `system`), not by any customer.
DISPATCHER_METADATA = EventMetadata(actor=Actor(type="system", id=DISPATCHER_ACTOR))


class PostgresDeliveryStore:
    def __init__(self, pool: asyncpg.Pool, secrets: WebhookSecretBox) -> None:
        self.pool = pool
        self.secrets = secrets

    async def subscriptions(self, account_ids: Sequence[uuid.UUID]) -> list[Subscription]:
        rows = await self.pool.fetch(SUBSCRIPTIONS, list(account_ids))
        return [Subscription(r["id"], r["account_id"], tuple(r["events"]), r["created_at"]) for r in rows]

    async def record(self, deliveries: Sequence[NewDelivery], next_offsets: Mapping[tuple[str, int], int]) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            created = 0
            if deliveries:
                status = await conn.execute(
                    INSERT_DELIVERIES,
                    [d.id for d in deliveries],
                    [d.webhook_id for d in deliveries],
                    [d.account_id for d in deliveries],
                    [d.message_id for d in deliveries],
                    [d.event_id for d in deliveries],
                    [d.event_type for d in deliveries],
                    [json.dumps(d.payload, separators=(",", ":")) for d in deliveries],
                )
                created = int(status.rsplit(" ", 1)[-1])
            if next_offsets:
                keys = sorted(next_offsets)
                await conn.execute(
                    SAVE_OFFSETS, [t for t, _ in keys], [p for _, p in keys], [next_offsets[k] for k in keys]
                )
            return created

    async def load_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        if not partitions:
            return {}
        rows = await self.pool.fetch(LOAD_OFFSETS, [t for t, _ in partitions], [p for _, p in partitions])
        return {(r["topic"], r["partition"]): int(r["next_offset"]) for r in rows}

    async def claim_due(
        self,
        limit: int,
        busy: Sequence[uuid.UUID],
        lease_seconds: float,
        choose: Callable[[Sequence[ClaimCandidate]], Sequence[ClaimCandidate]] | None = None,
    ) -> list[DueDelivery]:
        rows = await self.pool.fetch(CLAIM_CANDIDATES, list(busy), limit * 2 + CANDIDATES_BEYOND)
        candidates = [ClaimCandidate(r["id"], r["webhook_id"], r["account_id"]) for r in rows]
        chosen = choose(candidates) if choose is not None else candidates[:limit]
        if not chosen:
            return []
        ids = [c.delivery_id for c in chosen[:limit]]
        return self._due(await self.pool.fetch(LEASE_CHOSEN, ids, float(lease_seconds)))

    async def claim_next_of(self, webhook_id: uuid.UUID, lease_seconds: float) -> DueDelivery | None:
        claimed = self._due(await self.pool.fetch(CLAIM_NEXT_OF, webhook_id, float(lease_seconds)))
        return claimed[0] if claimed else None

    def _due(self, rows: list[asyncpg.Record]) -> list[DueDelivery]:
        claimed: list[DueDelivery] = []
        for row in rows:
            try:
                secrets = [self.secrets.decrypt(row["secret_ciphertext"], row["webhook_id"])]
                if row["previous_signs"] and row["previous_secret_ciphertext"] is not None:
                    secrets.append(self.secrets.decrypt(row["previous_secret_ciphertext"], row["webhook_id"]))
            except WebhookKeyError as exc:  # names key ids only; the delivery comes due again after its lease
                log.error("webhook secret cannot be decrypted: %s", exc, extra={"webhook_id": str(row["webhook_id"])})
                continue
            payload = row["payload"] if isinstance(row["payload"], dict) else json.loads(row["payload"])
            claimed.append(
                DueDelivery(
                    id=row["id"],
                    webhook_id=row["webhook_id"],
                    account_id=row["account_id"],
                    message_id=row["message_id"],
                    event_type=row["event_type"],
                    occurred_at=_occurred_at(payload, row["created_at"]),
                    payload=payload,
                    attempts=row["attempts"],
                    url=row["url"],
                    secrets=tuple(secrets),
                )
            )
        return claimed

    async def finish(self, outcome: AttemptOutcome, disabled_reason: str) -> bool:
        result = outcome.result
        if outcome.delivered:
            status = "succeeded"
        elif outcome.next_attempt_at is not None:
            status = "pending"
        else:
            status = "failed"
        values = (
            outcome.delivery_id, outcome.attempt, outcome.started_at, status, outcome.next_attempt_at,
            result.status_code, max(result.latency_ms, 0), result.error, result.body_excerpt,
        )  # fmt: skip
        if status != "failed":
            await self.pool.fetchval(FINISH, *values)
            return False
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(FINISH, *values) is None:  # deleted with its endpoint, or finished elsewhere
                return False
            if await conn.fetchval(DELIVERED_SINCE, outcome.webhook_id, outcome.delivery_id, SCHEDULE_BOUND_SECONDS):
                return False  # this delivery failed; the endpoint answers the others and stays enabled
            account_id = await conn.fetchval(DISABLE_ENDPOINT, outcome.webhook_id, disabled_reason)
            if account_id is None:
                return False
            await conn.execute(FAIL_PENDING, outcome.webhook_id)
            event = WebhookEndpointDisabled(
                account_id=account_id, webhook_id=outcome.webhook_id, reason=disabled_reason
            )
            await event_store.append(
                conn, [event], correlation_id=f"{DISPATCHER_ACTOR}:{outcome.delivery_id}", metadata=DISPATCHER_METADATA
            )
            return True


def _occurred_at(payload: dict[str, object], created_at: datetime) -> datetime:
    """The event's time (the body's `timestamp`), for the event-to-delivery metric; the row's creation otherwise."""
    text = payload.get("timestamp")
    if isinstance(text, str):
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
    return created_at

"""The webhook dispatcher's two halves (issue 17; DESIGN point 14: side effects for customers leave through an
outbox).

- `Ingestor`: a batch of audit events -> one delivery per (enabled endpoint subscribed to the type, event), written
  with the consumer's offsets in one transaction, so a record becomes deliveries exactly once.
- `DeliveryLoop`: sends due deliveries at least once, with the same `webhook-id` on every attempt; at most one in
  flight per endpoint and `concurrency` in all, so a slow or dead endpoint holds one slot; endpoints not proven
  (no attempt succeeded yet, or the last one failed) hold at most half the slots and one account at most a fifth
  of those (`domain.webhook_delivery.claim_lanes`), so endpoints that hang never delay those that answer; retries on
  the schedule of `domain.webhook_delivery`, then fails the delivery (and disables an endpoint that took nothing).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from uuid import UUID

from taifa_api import metrics
from taifa_api.application.webhook_ports import (
    AttemptOutcome,
    DeliveryStore,
    DueDelivery,
    FeedEvent,
    NewDelivery,
    Signer,
    Subscription,
    WebhookSender,
)
from taifa_api.domain import webhook_delivery as rules

log = logging.getLogger(__name__)

CHAIN = 20  # deliveries one slot sends to one endpoint in a row before the slot goes back to the claim
PROVEN_MAX = 100_000  # endpoints remembered as answering; past it the memory starts over (all unproven again)
HELD_BACK_MAX = 10_000  # endpoints left out of the claims while the unproven lane is full; past it, start over


def _now() -> datetime:
    return datetime.now(UTC)


def deliveries_for(events: Sequence[FeedEvent], subscriptions: Sequence[Subscription]) -> list[NewDelivery]:
    """Which endpoint takes which event: same account, subscribed to the type, and created before the event
    happened (an endpoint never receives the history that preceded it, whatever the consumer replays)."""
    by_account: dict[UUID, list[Subscription]] = {}
    for subscription in subscriptions:
        by_account.setdefault(subscription.account_id, []).append(subscription)
    planned: list[NewDelivery] = []
    for event in events:
        for sub in by_account.get(event.account_id, ()):
            if not rules.subscribed(sub.events, event.event_type) or sub.created_at > event.occurred_at:
                continue
            planned.append(
                NewDelivery(
                    id=rules.delivery_id(sub.webhook_id, event.event_id),
                    webhook_id=sub.webhook_id,
                    account_id=event.account_id,
                    message_id=rules.message_id(sub.webhook_id, event.event_id),
                    event_id=event.event_id,
                    event_type=event.event_type,
                    occurred_at=event.occurred_at,
                    payload=event.payload,
                )
            )
    return planned


class Ingestor:
    def __init__(self, store: DeliveryStore, on_new: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.on_new = on_new

    async def ingest(self, events: Sequence[FeedEvent], next_offsets: Mapping[tuple[str, int], int]) -> int:
        """Record the deliveries of `events` and the offsets after them (one transaction); returns new deliveries."""
        accounts = sorted({event.account_id for event in events})
        subscriptions = await self.store.subscriptions(accounts) if accounts else []
        created = await self.store.record(deliveries_for(events, subscriptions), next_offsets)
        if created:
            metrics.WEBHOOK_DELIVERIES_CREATED.inc(created)
            self.on_new()
        return created


def body_of(payload: Mapping[str, object]) -> bytes:
    """The request body: the §8 JSON object, compact (the signature covers exactly these bytes)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


class DeliveryLoop:
    """Claims due deliveries and sends each in its own task. `wake()` (new deliveries) ends the idle wait early."""

    def __init__(
        self,
        store: DeliveryStore,
        sender: WebhookSender,
        signer: Signer,
        *,
        concurrency: int,
        lease_seconds: float,
        idle_poll_seconds: float,
        retry_scale: float = 1.0,
        claim_gap_seconds: float = 0.02,
        clock: Callable[[], datetime] = _now,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.sender = sender
        self.signer = signer
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.idle_poll_seconds = idle_poll_seconds
        self.retry_scale = retry_scale
        self.claim_gap_seconds = claim_gap_seconds
        self.clock = clock
        self.jitter = jitter
        self._wake = asyncio.Event()
        self._in_flight: dict[UUID, asyncio.Task[None]] = {}  # endpoint id -> its one attempt under way
        self._proven: set[UUID] = set()  # endpoints whose last attempt from this process succeeded
        self._unproven: dict[UUID, UUID] = {}  # endpoint -> account, of the slots taken by endpoints not proven
        self._held_back: set[UUID] = set()  # unproven endpoints a claim passed over: left out until a slot frees

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event, *, retry_seconds: float = 1.0) -> None:
        """Until `stop`: fill the free slots with due deliveries, then wait for a slot, a wake-up or the poll."""
        loop = asyncio.get_running_loop()
        last_claim = 0.0
        try:
            while not stop.is_set():
                # Completions and new deliveries wake the loop one by one: claims are spaced so that one query
                # serves many of them (a claim visits every endpoint that has pending deliveries).
                gap = last_claim + self.claim_gap_seconds - loop.time()
                if gap > 0:
                    await asyncio.sleep(gap)
                last_claim = loop.time()
                self._wake.clear()
                try:
                    await self._fill_slots()
                    pause = self.idle_poll_seconds
                except Exception:  # the database is away: the leased deliveries come due again after their lease
                    log.exception("claiming webhook deliveries failed; retrying")
                    pause = retry_seconds
                await self._wait(stop, pause)
        finally:
            await self._drain()

    async def _fill_slots(self) -> None:
        free = self.concurrency - len(self._in_flight)
        if free <= 0:
            return
        unproven_slots, per_account = rules.claim_lanes(self.concurrency)
        held = Counter(self._unproven.values())

        def choose(candidates: Sequence[rules.ClaimCandidate]) -> list[rules.ClaimCandidate]:
            chosen, held_back = rules.choose_claims(
                candidates,
                free,
                proven=self._proven,
                unproven_left=unproven_slots - len(self._unproven),
                held=held,
                per_account=per_account,
            )
            if len(self._held_back) > HELD_BACK_MAX:
                self._held_back.clear()
            self._held_back.update(c.webhook_id for c in held_back)
            return chosen

        busy = [*self._in_flight, *self._held_back]
        claimed = await self.store.claim_due(free, busy, self.lease_seconds, choose)
        for delivery in claimed:
            if delivery.webhook_id not in self._proven:
                self._unproven[delivery.webhook_id] = delivery.account_id
            task = asyncio.create_task(self._attempt(delivery), name=f"webhook-{delivery.webhook_id}")
            self._in_flight[delivery.webhook_id] = task
            task.add_done_callback(self._done_callback(delivery.webhook_id))
        metrics.WEBHOOK_IN_FLIGHT.set(len(self._in_flight))

    def _done_callback(self, endpoint: UUID) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self._in_flight.pop(endpoint, None)
            if self._unproven.pop(endpoint, None) is not None:
                self._held_back.clear()  # an unproven slot is free: the endpoints passed over may take it
            metrics.WEBHOOK_IN_FLIGHT.set(len(self._in_flight))
            self._wake.set()  # a slot is free, and that endpoint's next delivery may be due

        return done

    async def _wait(self, stop: asyncio.Event, seconds: float) -> None:
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _drain(self) -> None:
        """On stop, attempts under way are cancelled: their lease runs out and they are sent again (same id)."""
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _attempt(self, delivery: DueDelivery) -> None:
        """Send `delivery`, then, while the endpoint answers 2xx, its next due ones (up to CHAIN in a row) without
        giving the slot back: a backlog to a healthy endpoint costs one index probe per delivery instead of a wait
        for the next claim. After CHAIN the slot is given back, so the claim can serve older endpoints first."""
        current = delivery
        for sent in range(1, CHAIN + 1):
            try:
                outcome = await self.attempt(current)
                if not outcome.delivered or sent == CHAIN:
                    return  # a failing endpoint waits for its schedule; a long backlog for the next claim
                following = await self.store.claim_next_of(current.webhook_id, self.lease_seconds)
            except Exception:  # recorded nowhere: the lease brings the delivery back
                log.exception("webhook attempt could not be recorded", extra={"delivery_id": str(current.id)})
                return
            if following is None:
                return
            current = following

    async def attempt(self, delivery: DueDelivery) -> AttemptOutcome:
        """One attempt: sign, send, record (and disable the endpoint when the schedule is spent)."""
        started = self.clock()
        body = body_of(delivery.payload)
        headers = self.signer.headers(delivery.message_id, started, body, delivery.secrets)
        headers["content-type"] = "application/json"
        result = await self.sender.send(delivery.url, headers, body)
        attempt = delivery.attempts + 1
        ok = rules.delivered(result.status_code)
        next_at = None
        if not ok:
            delay = rules.retry_delay(attempt, self.jitter(), scale=self.retry_scale)
            next_at = None if delay is None else self.clock() + delay
        outcome = AttemptOutcome(
            delivery_id=delivery.id,
            webhook_id=delivery.webhook_id,
            account_id=delivery.account_id,
            attempt=attempt,
            started_at=started,
            result=result,
            delivered=ok,
            next_attempt_at=next_at,
        )
        disabled = await self.store.finish(outcome, rules.DISABLED_REASON)
        self._observe(delivery, outcome, disabled)
        if ok:
            if len(self._proven) >= PROVEN_MAX:
                self._proven.clear()
            self._proven.add(delivery.webhook_id)
        else:
            self._proven.discard(delivery.webhook_id)
        return outcome

    def _observe(self, delivery: DueDelivery, outcome: AttemptOutcome, disabled: bool) -> None:
        result = outcome.result
        label = "delivered" if outcome.delivered else ("refused" if result.refused else "failed")
        metrics.WEBHOOK_ATTEMPTS.labels(label).inc()
        metrics.WEBHOOK_ATTEMPT_SECONDS.observe(result.latency_ms / 1000)
        if outcome.delivered:
            lag = (self.clock() - delivery.occurred_at).total_seconds()
            metrics.WEBHOOK_EVENT_TO_DELIVERY_SECONDS.observe(max(lag, 0.0))
        if disabled:
            metrics.WEBHOOK_ENDPOINTS_DISABLED.inc()
        # Failures are worth a line each; successes only at debug level (they are counted in the metrics).
        log.log(
            logging.DEBUG if outcome.delivered else logging.INFO,
            "webhook attempt",
            extra={
                "delivery_id": str(delivery.id),
                "webhook_id": str(delivery.webhook_id),
                "message_id": delivery.message_id,
                "attempt": outcome.attempt,
                "outcome": label,
                "status_code": result.status_code,
                "latency_ms": result.latency_ms,
                "error": result.error,
                "next_attempt_at": outcome.next_attempt_at.isoformat() if outcome.next_attempt_at else None,
                "endpoint_disabled": disabled,
            },
        )

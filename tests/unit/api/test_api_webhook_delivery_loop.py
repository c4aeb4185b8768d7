"""The delivery loop of the webhook dispatcher on fakes (issue 17): never two attempts in flight to one endpoint,
never more than `concurrency` in all, a healthy endpoint's backlog sent in a row without waiting for a claim, a
failure scheduled on the retry schedule and the last one reported as the end of the schedule."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from taifa_api.application.webhook_dispatch import CHAIN, DeliveryLoop
from taifa_api.application.webhook_ports import AttemptOutcome, DueDelivery, SendResult
from taifa_api.domain import webhook_delivery as rules


def delivery(webhook_id: uuid.UUID, attempts: int = 0) -> DueDelivery:
    return DueDelivery(
        id=uuid.uuid4(), webhook_id=webhook_id, account_id=uuid.uuid4(), message_id="msg_x", event_type="t",
        occurred_at=datetime.now(UTC), payload={"type": "t"}, attempts=attempts, url=f"https://hooks.example/{webhook_id}",
        secrets=("whsec_c2VjcmV0",),
    )  # fmt: skip


class FakeStore:
    def __init__(self, backlog: dict[uuid.UUID, int]) -> None:
        self.backlog = dict(backlog)
        self.claims = 0
        self.finished: list[AttemptOutcome] = []

    async def claim_due(self, limit: int, busy: Sequence[uuid.UUID], lease_seconds: float) -> list[DueDelivery]:
        self.claims += 1
        ready = [w for w, n in self.backlog.items() if n > 0 and w not in busy][:limit]
        for webhook_id in ready:
            self.backlog[webhook_id] -= 1
        return [delivery(w) for w in ready]

    async def claim_next_of(self, webhook_id: uuid.UUID, lease_seconds: float) -> DueDelivery | None:
        if self.backlog.get(webhook_id, 0) == 0:
            return None
        self.backlog[webhook_id] -= 1
        return delivery(webhook_id)

    async def finish(self, outcome: AttemptOutcome, disabled_reason: str) -> bool:
        self.finished.append(outcome)
        return outcome.next_attempt_at is None and not outcome.delivered


class FakeSender:
    def __init__(self, status: int = 204, pause: float = 0.001) -> None:
        self.status = status
        self.pause = pause
        self.in_flight: set[str] = set()
        self.max_in_flight = 0
        self.overlap = False

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> SendResult:
        key = url  # one URL per endpoint here
        self.overlap |= key in self.in_flight
        self.in_flight.add(key)
        self.max_in_flight = max(self.max_in_flight, len(self.in_flight))
        await asyncio.sleep(self.pause)
        self.in_flight.discard(key)
        return SendResult(status_code=self.status, latency_ms=1)


class FakeSigner:
    def headers(self, message_id: str, timestamp: datetime, body: bytes, secrets: Sequence[str]) -> dict[str, str]:
        return {"webhook-id": message_id}


async def run_until_done(loop: DeliveryLoop, store: FakeStore, expected: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    async with asyncio.timeout(10):
        while len(store.finished) < expected:
            await asyncio.sleep(0.005)
    stop.set()
    await task


async def test_one_attempt_per_endpoint_at_a_time_and_concurrency_in_all() -> None:
    endpoints = [uuid.uuid4() for _ in range(12)]
    store, sender = FakeStore({w: 5 for w in endpoints}), FakeSender()
    loop = DeliveryLoop(store, sender, FakeSigner(), concurrency=4, lease_seconds=30, idle_poll_seconds=0.01)
    await run_until_done(loop, store, 60)
    assert not sender.overlap and sender.max_in_flight <= 4
    assert all(o.delivered and o.next_attempt_at is None for o in store.finished)


async def test_a_healthy_backlog_is_sent_in_a_row_without_a_claim_per_delivery() -> None:
    webhook_id = uuid.uuid4()
    store = FakeStore({webhook_id: CHAIN * 2})
    loop = DeliveryLoop(store, FakeSender(), FakeSigner(), concurrency=2, lease_seconds=30, idle_poll_seconds=0.01)
    await run_until_done(loop, store, CHAIN * 2)
    assert store.claims < CHAIN  # one claim starts a chain of up to CHAIN deliveries


async def test_a_failure_is_scheduled_and_the_last_one_ends_the_schedule() -> None:
    webhook_id = uuid.uuid4()
    store = FakeStore({})
    loop = DeliveryLoop(
        store, FakeSender(status=503), FakeSigner(), concurrency=1, lease_seconds=30, idle_poll_seconds=0.01,
        jitter=lambda: 0.5,
    )  # fmt: skip
    first = await loop.attempt(delivery(webhook_id))
    assert not first.delivered and first.result.status_code == 503 and first.attempt == 1
    assert first.next_attempt_at is not None
    assert abs((first.next_attempt_at - first.started_at) - rules.RETRY_SCHEDULE[0]).total_seconds() < 1
    last = await loop.attempt(delivery(webhook_id, attempts=rules.MAX_ATTEMPTS - 1))
    assert last.attempt == rules.MAX_ATTEMPTS and last.next_attempt_at is None and not last.delivered


def test_the_dispatcher_never_logs_a_request_url_through_httpx() -> None:
    """httpx logs every request's URL at INFO, and a customer's URL may hold a token: `taifa-webhooks run` keeps
    httpx to warnings (a subprocess: logging is configured for the whole process)."""
    script = (
        "import logging\n"
        "from taifa_api.entrypoints import webhooks\n"
        "webhooks.run_loop = lambda coro: coro.close()\n"
        "webhooks.run()\n"
        "logging.getLogger('httpx').info('HTTP Request: POST https://8.8.8.8/hook?token=s3cr3t')\n"
        "logging.getLogger('taifa').warning('still logging')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert "still logging" in done.stderr and "s3cr3t" not in done.stderr + done.stdout

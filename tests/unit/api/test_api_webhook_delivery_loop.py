"""The delivery loop of the webhook dispatcher on fakes (issue 17): never two attempts in flight to one endpoint,
never more than `concurrency` in all, a healthy endpoint's backlog sent in a row without waiting for a claim, a
failure scheduled on the retry schedule and the last one reported as the end of the schedule."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from taifa_api.application.webhook_dispatch import CHAIN, DeliveryLoop
from taifa_api.application.webhook_ports import AttemptOutcome, DueDelivery, SendResult
from taifa_api.domain import webhook_delivery as rules

ACCOUNT = uuid.uuid4()


def delivery(webhook_id: uuid.UUID, attempts: int = 0, account_id: uuid.UUID = ACCOUNT) -> DueDelivery:
    return DueDelivery(
        id=uuid.uuid4(), webhook_id=webhook_id, account_id=account_id, message_id="msg_x", event_type="t",
        occurred_at=datetime.now(UTC), payload={"type": "t"}, attempts=attempts, url=f"https://hooks.example/{webhook_id}",
        secrets=("whsec_c2VjcmV0",),
    )  # fmt: skip


class FakeStore:
    def __init__(
        self,
        backlog: dict[uuid.UUID, int],
        accounts: dict[uuid.UUID, uuid.UUID] | None = None,
        window: int | None = None,
    ) -> None:
        self.backlog = dict(backlog)
        self.accounts = accounts or {}
        self.window = window
        self.claims = 0
        self.finished: list[AttemptOutcome] = []

    async def claim_due(
        self,
        limit: int,
        busy: Sequence[uuid.UUID],
        lease_seconds: float,
        choose: Callable[[Sequence[rules.ClaimCandidate]], Sequence[rules.ClaimCandidate]] | None = None,
    ) -> list[DueDelivery]:
        self.claims += 1
        due = [
            rules.ClaimCandidate(uuid.uuid4(), w, self.accounts.get(w, ACCOUNT))
            for w, n in self.backlog.items()
            if n > 0 and w not in busy
        ]
        due = due[: limit * 2 + self.window] if self.window is not None else due  # the store reads so many
        chosen = list(choose(due) if choose is not None else due)[:limit]
        for candidate in chosen:
            self.backlog[candidate.webhook_id] -= 1
        return [delivery(c.webhook_id, account_id=c.account_id) for c in chosen]

    async def claim_next_of(self, webhook_id: uuid.UUID, lease_seconds: float) -> DueDelivery | None:
        if self.backlog.get(webhook_id, 0) == 0:
            return None
        self.backlog[webhook_id] -= 1
        return delivery(webhook_id)

    async def finish(self, outcome: AttemptOutcome, disabled_reason: str) -> bool:
        self.finished.append(outcome)
        return outcome.next_attempt_at is None and not outcome.delivered


class FakeSender:
    def __init__(self, status: int = 204, pause: float = 0.001, hang: frozenset[str] = frozenset()) -> None:
        self.status = status
        self.pause = pause
        self.hang = hang  # URLs that never answer
        self.in_flight: set[str] = set()
        self.max_in_flight = 0
        self.overlap = False

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> SendResult:
        key = url  # one URL per endpoint here
        self.overlap |= key in self.in_flight
        self.in_flight.add(key)
        self.max_in_flight = max(self.max_in_flight, len(self.in_flight))
        await asyncio.sleep(3600 if url in self.hang else self.pause)
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


async def test_endpoints_that_hang_never_hold_back_another_accounts_or_a_proven_endpoint() -> None:
    # One account's ten endpoints hang (the default maximum per account); each would hold a slot for the whole
    # request timeout. Another account's new endpoint, and an endpoint that has answered before, still go at once.
    hanging_account = uuid.uuid4()
    hanging = [uuid.uuid4() for _ in range(10)]
    newcomer, proven = uuid.uuid4(), uuid.uuid4()
    accounts = {**{w: hanging_account for w in hanging}, newcomer: uuid.uuid4(), proven: uuid.uuid4()}
    store = FakeStore({proven: 1}, accounts)
    sender = FakeSender(hang=frozenset(f"https://hooks.example/{w}" for w in hanging))
    loop = DeliveryLoop(store, sender, FakeSigner(), concurrency=10, lease_seconds=30, idle_poll_seconds=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        async with asyncio.timeout(5):
            while len(store.finished) < 1:  # it answered once: proven
                await asyncio.sleep(0.005)
            store.backlog.update({**{w: 1 for w in hanging}, newcomer: 1, proven: 1})
            loop.wake()
            while len(store.finished) < 3:
                await asyncio.sleep(0.005)
        assert [o.webhook_id for o in store.finished][1:] in ([newcomer, proven], [proven, newcomer])
        assert all(o.delivered for o in store.finished)
        unproven, per_account = rules.claim_lanes(10)
        hung = [w for w in hanging if store.backlog[w] == 0]
        assert len(hung) == per_account < unproven  # that account's other endpoints wait for one of its slots
    finally:
        stop.set()
        await task


async def test_a_claim_reaches_a_proven_endpoint_behind_more_hanging_ones_than_it_reads() -> None:
    # Thirty accounts' hanging endpoints come due before a proven one, and a claim reads only a few candidates
    # beyond its free slots: those it passes over are left out of the next claims until an unproven slot frees.
    hanging = [uuid.uuid4() for _ in range(30)]
    proven = uuid.uuid4()
    store = FakeStore({proven: 1}, {w: uuid.uuid4() for w in [*hanging, proven]}, window=2)
    sender = FakeSender(hang=frozenset(f"https://hooks.example/{w}" for w in hanging))
    loop = DeliveryLoop(store, sender, FakeSigner(), concurrency=10, lease_seconds=30, idle_poll_seconds=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        async with asyncio.timeout(5):
            while len(store.finished) < 1:
                await asyncio.sleep(0.005)
            store.backlog = {**{w: 1 for w in hanging}, proven: 1}  # the hanging ones first in the claim's order
            loop.wake()
            while len(store.finished) < 2:
                await asyncio.sleep(0.005)
        assert [o.webhook_id for o in store.finished] == [proven, proven]
        assert sum(1 for w in hanging if store.backlog[w] == 0) == rules.claim_lanes(10)[0]
    finally:
        stop.set()
        await task


def test_claims_take_proven_endpoints_and_cap_the_others_per_lane_and_account() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    c = [rules.ClaimCandidate(uuid.uuid4(), uuid.uuid4(), account) for account in (a, a, a, b, a, b, b)]
    proven = {c[2].webhook_id}
    # a holds one unproven slot already (cap 2): one more of its own, its proven endpoint whatever the lane, then
    # b's until the lane (3 left) is full.
    take, held_back = rules.choose_claims(c, 10, proven=proven, unproven_left=3, held={a: 1}, per_account=2)
    assert (take, held_back) == ([c[0], c[2], c[3], c[5]], [c[1], c[4], c[6]])
    assert rules.choose_claims(c, 2, proven=proven, unproven_left=3, held={}, per_account=2) == ([c[0], c[1]], [])
    assert rules.choose_claims(c, 5, proven=proven, unproven_left=0, held={}, per_account=2) == (
        [c[2]],
        [c[0], c[1], c[3], c[4], c[5], c[6]],
    )
    assert rules.claim_lanes(50) == (25, 5) and rules.claim_lanes(10) == (5, 2) and rules.claim_lanes(1) == (1, 1)


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

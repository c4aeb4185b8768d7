"""The whole `taifa-webhooks` process (entrypoints.webhooks.serve, as the console script runs it) on a real broker and
PostgreSQL (issue 17): signed events of record and quota notices become signed deliveries; unsigned or wrongly
signed records and events the endpoint did not subscribe to do not; offsets live in PostgreSQL, and a dispatcher
that reads everything again (its offsets lost) creates no second delivery."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from standardwebhooks import Webhook
from taifa_api.entrypoints import webhooks
from taifa_api.settings import Settings
from taifa_events import DomainRegistered, DomainVerified, encode, kafka_headers, make_envelope, topics
from taifa_events.signing import USAGE_CONTEXT, Keyring
from taifa_events.usage import QuotaReached, encode_usage_record
from taifa_localstack import Tansu, free_port
from webhook_support import SECRET_KEYS, create_endpoint, receiver, wait_for

from tests.event_signing import signing_keyring


@pytest.fixture
def pool(db_pool: asyncpg.Pool) -> asyncpg.Pool:
    return db_pool


@contextlib.asynccontextmanager
async def dispatcher(api_db: str, broker: Tansu) -> AsyncIterator[Settings]:
    settings = Settings(
        database_url=api_db,
        kafka_bootstrap=broker.bootstrap,
        webhook_secret_keys=SECRET_KEYS,
        webhook_allow_http=True,
        webhooks_group_id=f"webhooks-test-{uuid.uuid4().hex[:8]}",
        webhooks_poll_seconds=0.05,
        webhooks_retry_scale=1e-4,
        webhooks_health_host="127.0.0.1",
        webhooks_health_port=free_port(),
    )  # type: ignore[call-arg]
    stop = asyncio.Event()
    task = asyncio.create_task(webhooks.serve(settings, stop))
    try:
        yield settings
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def produce(bootstrap: str, records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        for topic, key, value, headers in records:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


def event_record(data: object, keyring: Keyring | None) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    envelope = make_envelope(data, stream_version=1, position=1, correlation_id="test")  # type: ignore[type-var]
    value = encode(envelope)
    headers = kafka_headers(envelope.event_type, envelope.event_id, envelope.schema_version)
    if keyring is not None:
        headers += keyring.headers(value)
    return envelope.topic, envelope.key, value, headers


async def log_ends(bootstrap: str) -> dict[tuple[str, int], int]:
    """The end offset of every non-empty partition the dispatcher reads."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        names = (*topics.ALL_TOPICS, topics.USAGE_TOPIC)
        await consumer.topics()  # loads every topic's metadata
        partitions = [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = await consumer.end_offsets(partitions)
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items() if offset > 0}
    finally:
        await consumer.stop()


async def caught_up(pool: asyncpg.Pool, ends: dict[tuple[str, int], int]) -> bool:
    rows = await pool.fetch("SELECT topic, partition, next_offset FROM webhook_consumer_offsets")
    recorded = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
    return all(recorded.get(key, 0) >= end for key, end in ends.items())


async def test_signed_events_become_signed_deliveries_once(api_db: str, broker: Tansu, pool: asyncpg.Pool) -> None:
    keyring = signing_keyring()
    forger = Keyring({"taifa-forged": b"f" * 32}, "taifa-forged")
    async with receiver() as hook:
        webhook_id, account_id, secret = await create_endpoint(
            pool, hook.url, events=("domain.created", "smtp_credential.quota_reached")
        )
        domain_id, now = uuid.uuid4(), datetime.now(UTC)

        def registered(name: str) -> DomainRegistered:
            return DomainRegistered(
                domain_id=domain_id, account_id=account_id, name=name, verification_name="_taifa." + name,
                verification_value="v", created_at=now,
            )  # fmt: skip

        quota = QuotaReached(
            account_id=account_id, credential_id=uuid.uuid4(), day=now.strftime("%Y%m%d"), percent=80, count=160,
            quota=200, at=now,
        )  # fmt: skip
        quota_value = encode_usage_record(quota)
        await produce(
            broker.bootstrap,
            [
                event_record(registered("unsigned.example"), None),
                event_record(registered("forged.example"), forger),
                event_record(registered("signed.example"), keyring),
                event_record(DomainVerified(domain_id=domain_id, account_id=account_id, name="x", verified_at=now),
                             keyring),  # not subscribed
                # Signed as the projector signs usage records (their own context).
                (topics.USAGE_TOPIC, str(quota.credential_id).encode(), quota_value,
                 keyring.headers(quota_value, USAGE_CONTEXT)),
            ],
        )  # fmt: skip
        ends = await log_ends(broker.bootstrap)
        async with dispatcher(api_db, broker) as settings:
            await wait_for(lambda: caught_up(pool, ends), timeout=60)
            await wait_for(lambda: _async(len(hook.requests) >= 2), timeout=10)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.webhooks_health_port}") as ops:
                assert (await ops.get("/readyz")).status_code == 200
                metrics = (await ops.get("/metrics")).text
            assert 'taifa_webhooks_records_total{outcome="unsigned"}' in metrics
            assert "taifa_webhooks_attempts_total" in metrics
        bodies = sorted((Webhook(secret).verify(r.body, r.headers) for r in hook.requests), key=lambda b: b["type"])
        assert [b["type"] for b in bodies] == ["domain.created", "smtp_credential.quota_reached"]
        assert bodies[0]["data"]["data"]["name"] == "signed.example"
        assert bodies[1]["data"]["subject"] == {"type": "smtp_credential", "id": str(quota.credential_id)}
        first_ids = sorted(r.headers["webhook-id"] for r in hook.requests)

        # Offsets lost: a dispatcher reads every record again and finds every delivery already there.
        await pool.execute("DELETE FROM webhook_consumer_offsets")
        async with dispatcher(api_db, broker):
            await wait_for(lambda: caught_up(pool, ends), timeout=60)
        rows = await pool.fetch("SELECT message_id, status FROM webhook_deliveries WHERE webhook_id = $1", webhook_id)
        assert sorted(r["message_id"] for r in rows) == first_ids and {r["status"] for r in rows} == {"succeeded"}
        assert len(hook.requests) == 2


async def _async(value: object) -> object:
    return value

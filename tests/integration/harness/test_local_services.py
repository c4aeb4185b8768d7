"""The harness itself: each real service answers, and the broker behaves as the design relies on."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from taifa_localstack import create_topics


async def test_postgres_round_trip(postgres_server) -> None:
    conn = await asyncpg.connect(postgres_server.url)
    try:
        await conn.execute("CREATE TEMP TABLE t (id uuid PRIMARY KEY, note text)")
        row_id = uuid.uuid4()
        await conn.execute("INSERT INTO t VALUES ($1, $2)", row_id, "hello")
        assert await conn.fetchval("SELECT note FROM t WHERE id = $1", row_id) == "hello"
    finally:
        await conn.close()


async def test_redis_round_trip(redis_server) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        key = f"harness:{uuid.uuid4()}"
        await client.set(key, "value", ex=60)
        assert await client.get(key) == b"value"
    finally:
        await client.aclose()


async def test_consumer_group_resumes_after_committed_offsets(kafka_broker) -> None:
    topic = f"harness-{uuid.uuid4().hex[:8]}"
    group = f"group-{uuid.uuid4().hex[:8]}"
    await create_topics(kafka_broker.bootstrap, {topic: 3})
    sent = {f"m{i}" for i in range(30)}
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        for i in range(30):
            await producer.send_and_wait(topic, f"m{i}".encode(), key=f"k{i % 7}".encode())
    finally:
        await producer.stop()

    # First consumer: reads everything, then commits only the first half of each partition.
    first = await _consume(kafka_broker.bootstrap, topic, group, want=30)
    assert {value for _, _, value in first} == sent
    partitions = {tp for tp, _, _ in first}
    assert len(partitions) > 1, "keys should spread over the topic's partitions"
    committed: set[str] = set()
    offsets: dict[TopicPartition, int] = {}
    for tp in partitions:
        in_partition = [(offset, value) for p, offset, value in first if p == tp]
        half = in_partition[: len(in_partition) // 2]
        committed |= {value for _, value in half}
        offsets[tp] = (half[-1][0] + 1) if half else in_partition[0][0]
    await _commit(kafka_broker.bootstrap, topic, group, offsets)

    # Second consumer in the same group resumes exactly after the committed offsets.
    second = await _consume(kafka_broker.bootstrap, topic, group, want=len(sent - committed))
    assert {value for _, _, value in second} == sent - committed


async def _consume(bootstrap: str, topic: str, group: str, want: int) -> list[tuple[TopicPartition, int, str]]:
    consumer = _consumer(bootstrap, topic, group)
    await consumer.start()
    seen: list[tuple[TopicPartition, int, str]] = []
    try:
        async with asyncio.timeout(30):
            while len(seen) < want:
                for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                    seen += [(tp, m.offset, m.value.decode()) for m in messages]
        return seen
    finally:
        await consumer.stop()


async def _commit(bootstrap: str, topic: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = _consumer(bootstrap, topic, group)
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            while not consumer.assignment() >= set(offsets):
                await consumer.getmany(timeout_ms=200, max_records=1)
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


def _consumer(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )

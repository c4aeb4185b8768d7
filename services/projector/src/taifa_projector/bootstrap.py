"""Settings -> the projector's parts: the one place that builds adapters and hands them to the use cases.

`consumer_parts` wires what `taifa-projector run` needs (stores, dead-letter producer, batch applier,
cache guard, pruner, group consumer); `tools` wires what the other subcommands need (rebuild, checksum);
`migrate_schema` runs the migrations.
Every part that holds a connection is closed by the caller's `contextlib.AsyncExitStack`, last built
first closed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from taifa_events.signing import SIGNATURE_CONTEXT, USAGE_CONTEXT
from taifa_runtime.logs import configure_logging as configure_json_logging
from taifa_runtime.redis import redis_client

from taifa_projector.adapters.event_store import PostgresEventStoreReader
from taifa_projector.adapters.kafka import (
    GroupConsumer,
    KafkaDeadLetters,
    LogStarts,
    SeekToRecordedOffsets,
    make_consumer,
    make_producer,
)
from taifa_projector.adapters.kafka_topics import KafkaTopics
from taifa_projector.adapters.postgres import PostgresReadModelStore, create_pool
from taifa_projector.adapters.read_side_lock import ReadSideLock
from taifa_projector.adapters.redis_cache import RedisAuthCacheWriter
from taifa_projector.adapters.usage_kafka import KafkaUsagePublisher, make_usage_consumer
from taifa_projector.adapters.usage_postgres import PostgresUsageStore
from taifa_projector.adapters.usage_redis import RedisUsageCounters
from taifa_projector.application.batches import BatchApplier
from taifa_projector.application.cache import CacheGuard
from taifa_projector.application.log_gaps import LogGaps
from taifa_projector.application.pruning import ProcessedPruner
from taifa_projector.application.retry import retry_transient
from taifa_projector.application.usage import UsageApplier, UsageFlusher
from taifa_projector.domain.log_positions import TopicPartitionKey
from taifa_projector.settings import Settings

log = logging.getLogger(__name__)

# A batch's Redis transaction is small; a Redis that does not answer within this is retried (unavailable).
CONSUMER_REDIS_TIMEOUT = 10.0
CONSUMER_REDIS_CONNECT_TIMEOUT = 5.0
# Rebuild pipelines write thousands of entries per round trip.
TOOLS_REDIS_TIMEOUT = 30.0


def configure_logging(settings: Settings) -> None:
    """The projector's logs as JSON lines on stderr (aiokafka's chatter kept to warnings, as in every service)."""
    configure_json_logging("projector", settings.projector_log_level)


def _quietly(close: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
    """A closing step whose failure (a store already gone) must not keep the next ones from running."""

    async def run() -> None:
        with contextlib.suppress(Exception):
            await close()

    return run


@dataclass
class ConsumerParts:
    """Everything one consuming instance runs on. The consumer is built, not started: the caller holds the
    read side first (`read_side`), then starts it."""

    pool: asyncpg.Pool
    redis: aioredis.Redis
    read_side: ReadSideLock
    store: PostgresReadModelStore
    cache: RedisAuthCacheWriter
    guard: CacheGuard
    pruner: ProcessedPruner
    producer: AIOKafkaProducer
    applier: BatchApplier
    log_gaps: LogGaps
    listener: SeekToRecordedOffsets
    consumer: AIOKafkaConsumer
    group: GroupConsumer  # the consumer as the consume loop polls and commits with it


async def consumer_parts(
    settings: Settings, stack: AsyncExitStack, *, log_starts: LogStarts | None = None
) -> ConsumerParts:
    """Build a consuming instance's parts, each closed by `stack`. `log_starts` replaces the broker's answer
    to "where does this partition's log start" (tests simulate retention with it)."""
    s = settings
    keyring = s.event_keyring()  # no keys, no consuming: refuse before touching anything
    retry = {"initial": s.projector_retry_initial_seconds, "maximum": s.projector_retry_max_seconds}
    pool = await retry_transient(lambda: create_pool(s.database_url, s.projector_db_pool_size), **retry)
    stack.push_async_callback(_quietly(pool.close))
    read_side = ReadSideLock(s.database_url, exclusive=False)
    stack.push_async_callback(_quietly(read_side.release))
    client = redis_client(s.redis_url, timeout=CONSUMER_REDIS_TIMEOUT, connect_timeout=CONSUMER_REDIS_CONNECT_TIMEOUT)
    stack.push_async_callback(_quietly(client.aclose))
    store = PostgresReadModelStore(pool, s.projector_group_id)
    cache = RedisAuthCacheWriter(client, s.projector_group_id)
    guard = CacheGuard(store, cache, interval=s.projector_cache_check_seconds, chunk=s.projector_cache_chunk)
    stack.push_async_callback(_quietly(guard.close))
    pruner = ProcessedPruner(
        store,
        keep_positions=s.projector_processed_keep_positions,
        interval=s.projector_prune_interval_seconds,
        chunk=s.projector_prune_chunk,
    )
    producer = make_producer(s.kafka_client_options())
    await producer.start()
    stack.push_async_callback(_quietly(producer.stop))
    applier = BatchApplier(
        store,
        cache,
        KafkaDeadLetters(producer),
        keyring=keyring,
        max_attempts=s.projector_max_attempts,
        retry_initial=s.projector_retry_initial_seconds,
        retry_max=s.projector_retry_max_seconds,
        publish_applied=s.projector_publish_applied,
    )

    async def load_offsets(partitions: list[TopicPartitionKey]) -> dict[TopicPartitionKey, int]:
        return await retry_transient(lambda: store.load_offsets(partitions), **retry)

    log_gaps = LogGaps()
    listener = SeekToRecordedOffsets(
        load_offsets, guard.request_check, on_gap=log_gaps.found, on_revoked=log_gaps.released, log_starts=log_starts
    )
    consumer = make_consumer(
        s.kafka_client_options(),
        s.projector_topics,
        group_id=s.projector_group_id,
        batch_size=s.projector_batch_size,
        session_timeout_ms=s.projector_session_timeout_ms,
        max_poll_interval_ms=s.projector_max_poll_interval_ms,
        listener=listener,
    )
    stack.push_async_callback(_quietly(consumer.stop))
    return ConsumerParts(
        pool,
        client,
        read_side,
        store,
        cache,
        guard,
        pruner,
        producer,
        applier,
        log_gaps,
        listener,
        consumer,
        GroupConsumer(consumer, listener),
    )


@dataclass
class Tools:
    """The stores the operator commands work on (rebuild, checksum)."""

    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    store: PostgresReadModelStore
    cache: RedisAuthCacheWriter

    @property
    def event_store(self) -> PostgresEventStoreReader:
        return PostgresEventStoreReader(self.pool)

    @property
    def event_log(self) -> KafkaTopics:
        return KafkaTopics(self.settings.kafka_client_options())


def migrate_schema(settings: Settings) -> None:
    """Bring the projector's tables to the newest revision (blocking: call it outside an event loop)."""
    from taifa_projector.adapters import migrate  # alembic is heavy: only this command needs it

    migrate.upgrade(settings.database_url)


def exclusive_read_side(settings: Settings) -> ReadSideLock:
    """The lock a rebuild holds exclusively: no live projector writes the read side meanwhile."""
    return ReadSideLock(settings.database_url, exclusive=True)


@contextlib.asynccontextmanager
async def tools(
    settings: Settings, *, pool_size: int = 2, redis_timeout: float = TOOLS_REDIS_TIMEOUT
) -> AsyncIterator[Tools]:
    """The stores for an operator command, closed when the block ends."""
    async with AsyncExitStack() as stack:
        pool = await create_pool(settings.database_url, pool_size)
        stack.push_async_callback(pool.close)
        client = redis_client(settings.redis_url, timeout=redis_timeout)
        stack.push_async_callback(client.aclose)
        yield Tools(
            settings,
            pool,
            client,
            PostgresReadModelStore(pool, settings.projector_group_id),
            RedisAuthCacheWriter(client, settings.projector_group_id),
        )


@dataclass
class UsageParts:
    """What the usage flusher and the usage consumer run on (issue 16)."""

    applier: UsageApplier
    flusher: UsageFlusher
    consumer: AIOKafkaConsumer


async def usage_parts(settings: Settings, stack: AsyncExitStack) -> UsageParts:
    """Build the usage flusher and consumer, each part closed by `stack`; the consumer is built, not started."""
    s = settings
    keyring = s.usage_signing_keyring()  # refuse before touching anything
    retry = {"initial": s.projector_retry_initial_seconds, "maximum": s.projector_retry_max_seconds}
    pool = await retry_transient(lambda: create_pool(s.database_url, 2), **retry)
    stack.push_async_callback(_quietly(pool.close))
    client = redis_client(s.redis_url, timeout=CONSUMER_REDIS_TIMEOUT, connect_timeout=CONSUMER_REDIS_CONNECT_TIMEOUT)
    stack.push_async_callback(_quietly(client.aclose))
    producer = make_producer(s.kafka_client_options())
    await producer.start()
    stack.push_async_callback(_quietly(producer.stop))
    consumer = make_usage_consumer(
        s.kafka_client_options(),
        s.projector_usage_topic,
        group_id=s.projector_usage_group_id,
        batch_size=s.projector_batch_size,
    )
    stack.push_async_callback(_quietly(consumer.stop))
    return UsageParts(
        UsageApplier(PostgresUsageStore(pool), KafkaDeadLetters(producer), keyring),
        UsageFlusher(
            RedisUsageCounters(client),
            KafkaUsagePublisher(
                producer,
                keyring,
                s.projector_usage_topic,
                usage_signing_context(s),
            ),
            grace_seconds=s.usage_window_grace_seconds,
        ),
        consumer,
    )


def usage_signing_context(settings: Settings) -> bytes:
    """The context usage records are signed under (TAIFA_PROJECTOR_USAGE_SIGNING_CONTEXT)."""
    return USAGE_CONTEXT if settings.projector_usage_signing_context == "usage" else SIGNATURE_CONTEXT

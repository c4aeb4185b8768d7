"""Usage windows end to end (issue 16): a window counted in Redis (written here by hand, as the relays write it)
is flushed to the usage topic and applied to the read model; flushing again, redelivery and a replay change
nothing; a rebuild from the event store keeps usage and last use."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from taifa_events import usage
from taifa_localstack import create_topics
from taifa_projector.adapters.usage_redis import RedisUsageCounters
from taifa_projector.application.usage import UsageFlusher
from taifa_projector.entrypoints.usage_loop import UsageWorker
from taifa_projector.settings import Settings
from taifa_relay.adapters.usage_buffer import UsageBuffer

from tests.integration.projector.conftest import redis_url_for
from tests.integration.projector.projector_harness import ReadSide, eventually, produce, rebuild, running
from tests.integration.projector.test_projector_rebuild import store_events
from tests.unit.projector.projector_events import scenario


@contextlib.asynccontextmanager
async def usage_worker(settings: Settings) -> AsyncIterator[UsageWorker]:
    worker = UsageWorker(settings)
    await worker.start()
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            await worker.close()


async def _usage_settings(isolated) -> Settings:
    topic = f"{isolated.group_id}.usage"
    await create_topics(isolated.bootstrap, {topic: 3, topic + ".dlq": 1})
    return isolated.settings(projector_usage_topic=topic, usage_flush_seconds=0.3)


async def _count_by_hand(side: ReadSide, credential_id, account_id, secret_id, now: int) -> int:
    """What a relay pod's pipeline writes for 3 messages (two pods' HINCRBYs would add up the same way)."""
    window = usage.window_start(now)
    key = usage.usage_key(credential_id, window)
    pipe = side.redis.pipeline(transaction=True)
    pipe.hincrby(key, usage.FIELD_MESSAGES, 2).hincrby(key, usage.FIELD_MESSAGES, 1)
    pipe.hincrby(key, usage.FIELD_RECIPIENTS, 5).hincrby(key, usage.FIELD_BYTES, 900)
    pipe.hincrby(key, usage.refused_field("policy"), 1)
    pipe.hset(
        key,
        mapping={
            usage.FIELD_ACCOUNT_ID: str(account_id),
            usage.FIELD_LAST_USED_AT: str(now),
            usage.FIELD_LAST_USED_IP: "192.0.2.44",
            usage.FIELD_LAST_SECRET_ID: str(secret_id),
            usage.secret_last_used_field(secret_id): str(now),
        },
    )
    pipe.expire(key, usage.USAGE_TTL_SECONDS)
    pipe.zadd(usage.USAGE_PENDING_KEY, {usage.pending_member(credential_id, window): window})
    await pipe.execute()
    return window


async def _window_row(side: ReadSide, credential_id):
    return await side.pool.fetchrow("SELECT * FROM rm_usage_windows WHERE credential_id = $1", credential_id)


async def test_flushed_window_is_applied_once_and_survives_redelivery_replay_and_rebuild(isolated) -> None:
    settings = await _usage_settings(isolated)
    events = scenario(120, seed=7)
    await store_events(isolated.database_url, events)
    await produce(isolated.bootstrap, isolated.topic_names, events)
    now = int(time.time())
    async with ReadSide(settings) as side:
        async with running(settings):
            await eventually(lambda: side.consumed(len(events)), what="live applied")
        cred = await side.pool.fetchrow(
            "SELECT c.credential_id, c.account_id, s.secret_id FROM rm_smtp_credentials c "
            "JOIN rm_credential_secrets s USING (credential_id) ORDER BY c.credential_id LIMIT 1"
        )
        await _count_by_hand(side, cred["credential_id"], cred["account_id"], cred["secret_id"], now)

        async with usage_worker(settings) as worker:
            await eventually(lambda: _has_row(side, cred["credential_id"]), what="window applied")
            # The window is still open: it is flushed again at every interval (redelivered totals).
            applied = worker.windows_applied
            await eventually(lambda: _applied_more(worker, applied + 2), what="window flushed again")
        row = await _window_row(side, cred["credential_id"])
        assert (row["messages"], row["recipients"], row["bytes"]) == (3, 5, 900)
        assert row["refused"] in ({"policy": 1}, '{"policy": 1}')
        used = await side.credential(cred["credential_id"])
        assert used["last_used_at"] == datetime.fromtimestamp(now, UTC)
        assert str(used["last_used_ip"]) == "192.0.2.44"
        secret_used = await side.pool.fetchval(
            "SELECT last_used_at FROM rm_credential_secrets WHERE credential_id = $1 AND secret_id = $2",
            cred["credential_id"],
            cred["secret_id"],
        )
        assert secret_used == datetime.fromtimestamp(now, UTC)

        # A replay of the whole usage topic (a new consumer group from the earliest record) changes nothing.
        replay = settings.model_copy(update={"projector_usage_group_id": f"replay-{uuid.uuid4().hex[:8]}"})
        await side.redis.delete(usage.USAGE_PENDING_KEY)  # nothing new to flush: only the replay applies
        async with usage_worker(replay) as worker:
            await eventually(lambda: _applied_more(worker, 3), what="topic replayed")
        assert await _window_row(side, cred["credential_id"]) == row

        # A rebuild from the event store swaps every projected table but keeps usage and last use.
        live = await side.checksums()
        summary = await asyncio.to_thread(rebuild, isolated, "event-store")
        assert summary["events"] == len(events)
        assert await side.checksums() == live
        assert await _window_row(side, cred["credential_id"]) == row
        again = await side.credential(cred["credential_id"])
        assert (again["last_used_at"], again["last_used_ip"]) == (used["last_used_at"], used["last_used_ip"])


async def _has_row(side: ReadSide, credential_id) -> bool:
    row = await _window_row(side, credential_id)
    return row is not None and row["messages"] == 3


async def _applied_more(worker: UsageWorker, at_least: int) -> bool:
    return worker.windows_applied >= at_least


async def _hash_of_generation(side: ReadSide, credential_id, account_id, window: int, generation: str, messages: int):
    """A usage hash as a relay creates it: its generation set once, with the counts."""
    key = usage.usage_key(credential_id, window)
    fields = {usage.FIELD_ACCOUNT_ID: str(account_id), usage.FIELD_GENERATION: generation}
    pipe = side.redis.pipeline(transaction=True)
    pipe.hset(key, mapping=fields).hincrby(key, usage.FIELD_MESSAGES, messages)
    pipe.zadd(usage.USAGE_PENDING_KEY, {usage.pending_member(credential_id, window): window})
    await pipe.execute()


async def test_a_window_counted_again_after_redis_lost_it_adds_to_what_was_published(isolated) -> None:
    """Redis loses the hour's hash after it was published (a flush, a failover to an empty replica); the relays make
    it again from zero under a new generation. Both generations are kept and add up: the counts made after the loss
    are not hidden under the published total."""
    settings = await _usage_settings(isolated)
    credential_id, account_id = uuid.uuid4(), uuid.uuid4()
    window = usage.window_start(time.time())

    async def generations() -> dict[str, int]:
        rows = await side.pool.fetch(
            "SELECT generation, messages FROM rm_usage_windows WHERE credential_id = $1", credential_id
        )
        return {r["generation"]: r["messages"] for r in rows}

    async with ReadSide(settings) as side, usage_worker(settings):
        await _hash_of_generation(side, credential_id, account_id, window, "relay-a.1", 3)
        await eventually(lambda: _equals(generations, {"relay-a.1": 3}), what="first generation applied")
        await side.redis.delete(usage.usage_key(credential_id, window))  # lost with Redis
        await _hash_of_generation(side, credential_id, account_id, window, "relay-b.7", 2)
        await eventually(lambda: _equals(generations, {"relay-a.1": 3, "relay-b.7": 2}), what="both generations")


async def _equals(read, expected) -> bool:  # type: ignore[no-untyped-def]
    return await read() == expected


async def test_a_relays_late_batch_landing_while_its_window_is_closed_is_published_at_the_next_flush(
    redis_server,
) -> None:
    # The flusher reads a closed window, publishes it, then takes it out of the pending set. A relay that could not
    # reach Redis across the hour's end brings its last count in between: its ZADD finds the window still pending
    # and does nothing, and a plain ZREM then dropped the window with that count never published.
    url = redis_url_for(redis_server.url)  # a database of its own
    client, relay = aioredis.Redis.from_url(url), UsageBuffer(url)
    credential, account = str(uuid.uuid4()), str(uuid.uuid4())
    window = usage.window_start(time.time()) - usage.WINDOW_SECONDS  # the previous hour
    for _ in range(2):
        relay.delivered(credential, account, str(uuid.uuid4()), "192.0.2.1", 1, 100, window + 1800)
    await relay.flush()
    relay.delivered(credential, account, str(uuid.uuid4()), "192.0.2.1", 1, 100, window + 1801)  # kept from Redis
    published: list[int] = []

    class Publisher:  # the usage topic; the relay's batch lands during the publish (a Kafka round trip)
        async def publish(self, records: Sequence[Any]) -> None:
            published.extend(record.messages for record in records)
            await relay.flush()

    flusher = UsageFlusher(RedisUsageCounters(client), Publisher(), grace_seconds=60)
    closed_at = datetime.fromtimestamp(window + usage.WINDOW_SECONDS + 300, UTC)
    try:
        await flusher.flush(closed_at)
        assert published == [2]
        await flusher.flush(closed_at)  # still pending: published again, with the late message
        assert published == [2, 3]
        assert await client.zcard(usage.USAGE_PENDING_KEY) == 0  # and closed for good
    finally:
        await relay.close()
        await client.aclose()

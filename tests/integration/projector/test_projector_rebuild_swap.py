"""A rebuild builds new tables and swaps them in: readers of the live read models never wait for it (item 21).

The rebuild is held at the end of its PostgreSQL write (the test locks `projector_offsets`, which a
Kafka rebuild writes last) so the moment "new content loaded, not swapped yet" lasts as long as the test
needs, whatever the machine's speed. Before the swap design the rebuild had TRUNCATEd the live tables by
then (ACCESS EXCLUSIVE until commit) and every reader waited.
"""

from __future__ import annotations

import asyncio

import asyncpg
import redis.asyncio as aioredis
from taifa_projector.adapters import audit_feed
from taifa_projector.adapters.kafka_topics import KafkaTopics
from taifa_projector.adapters.postgres import READ_SIDE_TABLES, PostgresReadModelStore
from taifa_projector.adapters.redis_cache import RedisAuthCacheWriter
from taifa_projector.application.rebuild import rebuild_from_kafka

from tests.integration.projector.projector_harness import ReadSide, eventually, produce, running
from tests.unit.projector.projector_events import scenario

# What the API reads (its queries, as prepared statements the connection keeps across the swap).
API_QUERIES = (
    "SELECT count(*) FROM rm_smtp_credentials WHERE account_id IS NOT NULL",
    "SELECT count(*) FROM rm_domains WHERE account_id IS NOT NULL",
)


async def _offsets_write_waiting(side: ReadSide) -> bool:
    waiting = await side.pool.fetchval(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'projector_offsets'::regclass"
    )
    return bool(waiting)


async def _read_all(reader: asyncpg.Connection) -> list[int]:
    return [int(await reader.fetchval(query)) for query in API_QUERIES]


async def test_readers_are_not_blocked_while_a_rebuild_writes_the_read_side(isolated) -> None:
    settings = isolated.settings()
    events = scenario(3000, seed=21)
    await produce(isolated.bootstrap, isolated.topic_names, events)
    async with ReadSide(settings) as side:
        async with running(settings):
            await eventually(lambda: side.consumed(len(events)), timeout=60, what="live applied")
        live = await side.checksums()
        reader = await asyncpg.connect(settings.database_url)
        holder = await asyncpg.connect(settings.database_url)
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        client = aioredis.Redis.from_url(settings.redis_url)
        rebuilding: asyncio.Task[object] | None = None
        try:
            await reader.execute("SET lock_timeout = '2s'")
            before = await _read_all(reader)
            holding = holder.transaction()
            await holding.start()
            await holder.execute("LOCK TABLE projector_offsets IN SHARE MODE")
            store = PostgresReadModelStore(pool, settings.projector_group_id)
            cache = RedisAuthCacheWriter(client, settings.projector_group_id)
            rebuilding = asyncio.create_task(
                rebuild_from_kafka(
                    store,
                    cache,
                    KafkaTopics(settings.kafka_client_options()),
                    settings.projector_topics,
                    keyring=settings.event_keyring(),
                )
            )
            # Readers keep reading while the rebuild reads the log, builds and loads its tables...
            while not await _offsets_write_waiting(side):
                assert not rebuilding.done(), rebuilding.exception() if rebuilding.done() else None
                assert await _read_all(reader) == before
                for table in READ_SIDE_TABLES:
                    await reader.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 - module constants
                await asyncio.sleep(0.05)
            # ... and while it waits at the end of its write, with the new content loaded: no reader waits.
            assert await _read_all(reader) == before
            for table in READ_SIDE_TABLES:
                await reader.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 - module constants
            await holding.rollback()
            summary = await asyncio.wait_for(rebuilding, 120)
            assert summary.events == len(events)
            # The rebuild equals live, and the reader's prepared statements work on the swapped-in tables.
            assert await side.checksums() == live
            assert await _read_all(reader) == before
            assert await side.count("projector_processed_events") == len(events)
        finally:
            await holder.close()
            if rebuilding is not None and not rebuilding.done():
                rebuilding.cancel()
                await asyncio.gather(rebuilding, return_exceptions=True)
            await client.aclose()
            pool.terminate()
            await reader.close()


async def test_the_swapped_in_tables_keep_the_live_indexes_constraints_and_grants(isolated) -> None:
    settings = isolated.settings()
    events = scenario(300, seed=22)
    await produce(isolated.bootstrap, isolated.topic_names, events)
    async with ReadSide(settings) as side:
        role = f"reader_{isolated.group_id}"
        await side.pool.execute(f'CREATE ROLE "{role}"')
        await side.pool.execute(f'GRANT SELECT ON rm_smtp_credentials, rm_domains TO "{role}"')
        before = await _schema(side)
        # A staging table a failed rebuild left behind (of another shape): the next rebuild starts afresh.
        await side.pool.execute(f"CREATE TABLE {audit_feed.STAGING} (leftover int)")
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        client = aioredis.Redis.from_url(settings.redis_url)
        try:
            store = PostgresReadModelStore(pool, settings.projector_group_id)
            cache = RedisAuthCacheWriter(client, settings.projector_group_id)
            await rebuild_from_kafka(
                store,
                cache,
                KafkaTopics(settings.kafka_client_options()),
                settings.projector_topics,
                keyring=settings.event_keyring(),
            )
        finally:
            await client.aclose()
            await pool.close()
        # The audit feed's staging table became the swapped-in feed (renamed): same schema, nothing left behind.
        assert await _schema(side) == before
        assert await side.pool.fetchval("SELECT to_regclass($1)", audit_feed.STAGING) is None
        assert await side.count("rm_audit_events") > 10
        assert await side.count("rm_domains") > 10
        leftovers = await side.pool.fetchval("SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_rebuild%'")
        assert leftovers == 0
        await side.pool.execute(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')


async def _schema(side: ReadSide) -> dict[str, object]:
    """Index definitions, constraints, column defaults and grants of every read-side table."""
    schema: dict[str, object] = {}
    for table in READ_SIDE_TABLES:
        indexes = await side.pool.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1 ORDER BY indexname", table
        )
        constraints = await side.pool.fetch(
            "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint "
            "WHERE conrelid = $1::regclass ORDER BY conname",
            table,
        )
        columns = await side.pool.fetch(
            "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
            "WHERE table_name = $1 ORDER BY ordinal_position",
            table,
        )
        grants = await side.pool.fetch(
            "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
            "WHERE table_name = $1 ORDER BY grantee, privilege_type",
            table,
        )
        schema[table] = [[tuple(r) for r in rows] for rows in (indexes, constraints, columns, grants)]
    return schema


async def test_a_rebuild_refused_at_the_swap_puts_the_auth_cache_back(isolated, monkeypatch) -> None:
    """A long read transaction on a read-side table keeps the swap from its locks (`SwapTimedOut`: "nothing was
    changed"). The cache had been cleared and loaded from the fold meanwhile: it used to be left without an epoch, so
    with the projectors stopped for the rebuild every relay answered 454 (a review's probe). It is put back from the
    unchanged read side, with a new epoch and the watermark it had."""
    import pytest
    from taifa_events.auth_cache import EPOCH_KEY, WATERMARK_KEY
    from taifa_projector import bootstrap
    from taifa_projector.adapters import table_swap
    from taifa_projector.application.rebuild import rebuild_from_event_store

    from tests.integration.projector.test_projector_rebuild import store_events
    from tests.unit.projector.projector_events import Domain

    settings = isolated.settings()
    d = Domain()
    events = [d.registered(1), d.verified(2), d.created(3)]
    await store_events(isolated.database_url, events)
    await produce(isolated.bootstrap, isolated.topic_names, events)
    async with ReadSide(settings) as side:
        async with running(settings):
            await eventually(lambda: side.consumed(3), what="live applied")
        epoch = await side.redis.get(EPOCH_KEY)
        assert epoch is not None and await side.entry(d.username) is not None
        reader = await asyncpg.connect(isolated.database_url)
        transaction = reader.transaction()
        await transaction.start()
        await reader.execute("LOCK TABLE rm_domains IN ACCESS SHARE MODE")
        monkeypatch.setattr(table_swap, "SWAP_ATTEMPTS", 2)  # 120 in production: the same, two minutes later
        try:
            async with bootstrap.tools(settings) as parts:
                with pytest.raises(table_swap.SwapTimedOut, match="nothing was changed"):
                    await rebuild_from_event_store(parts.event_store, parts.store, parts.cache)
        finally:
            await transaction.rollback()
            await reader.close()
        after = await side.redis.get(EPOCH_KEY)
        assert after is not None and after != epoch, "a complete cache again, under a new epoch"
        assert await side.entry(d.username) is not None
        assert int(await side.redis.get(WATERMARK_KEY)) == events[-1].position

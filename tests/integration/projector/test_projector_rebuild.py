"""Rebuild from Kafka offset 0 or from the event store equals the live read side (E9)."""

from __future__ import annotations

import asyncio
import json

import asyncpg
from taifa_events import envelope_to_json
from taifa_events.auth_cache import WATERMARK_KEY

from tests.integration.projector.projector_harness import ReadSide, eventually, holds, produce, rebuild, running
from tests.unit.projector.projector_events import Domain, scenario

# The event store is the credential-api's table (docs/interfaces.md); the projector only reads it.
# Created here from the documented columns so the projector's tests do not depend on the API's migrations.
EVENT_STORE_DDL = """
CREATE TABLE IF NOT EXISTS event_store (
    position bigint PRIMARY KEY, event_id uuid UNIQUE NOT NULL, event_type text NOT NULL,
    schema_version int NOT NULL, stream_id uuid NOT NULL, stream_version int NOT NULL,
    topic text NOT NULL, partition_key text NOT NULL, occurred_at timestamptz NOT NULL,
    correlation_id text NOT NULL, data jsonb NOT NULL, metadata jsonb NULL, UNIQUE (stream_id, stream_version)
)
"""


async def store_events(database_url: str, events) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(EVENT_STORE_DDL)
        await conn.executemany(
            "INSERT INTO event_store VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb)",
            [
                (
                    e.position, e.event_id, e.event_type, e.schema_version, e.stream_id, e.stream_version,
                    e.topic, e.key.decode(), e.occurred_at, e.correlation_id,
                    json.dumps(envelope_to_json(e)["data"]),
                )
                for e in events
            ],
        )  # fmt: skip
    finally:
        await conn.close()


async def test_rebuild_from_kafka_equals_live_and_live_resumes_after_it(isolated) -> None:
    settings = isolated.settings()
    events = scenario(600, seed=11)
    # Redeliveries and a late duplicate of an early event must not matter either way.
    delivered = events + events[100:150] + [events[5]]
    await produce(isolated.bootstrap, isolated.topic_names, delivered)
    async with ReadSide(settings) as side:
        async with running(settings):
            await eventually(lambda: side.consumed(len(delivered)), what="live applied")
        live = await side.checksums()
        assert await side.count("rm_smtp_credentials") > 50 and await side.count("rm_domains") > 50

        summary = await asyncio.to_thread(rebuild, isolated, "kafka")
        assert summary["source"] == "kafka" and summary["events"] == len(events)
        assert await side.checksums() == live
        assert await side.count("projector_processed_events") == len(events)

        # A projector started after the rebuild resumes at the end: only the new event is applied.
        later = Domain()
        await produce(isolated.bootstrap, isolated.topic_names, [later.registered(10_000)])
        async with running(settings) as projector:
            await eventually(lambda: side.count("rm_domains", f"name = '{later.name}'"), what="new event applied")
            await eventually(holds(lambda: projector.totals.applied >= 1), what="totals counted")
            assert projector.totals.applied == 1 and projector.totals.duplicates == 0


async def test_rebuild_from_the_event_store_equals_live(isolated) -> None:
    settings = isolated.settings()
    events = scenario(600, seed=12)
    await store_events(isolated.database_url, events)
    await produce(isolated.bootstrap, isolated.topic_names, events)
    async with ReadSide(settings) as side:
        async with running(settings):
            await eventually(lambda: side.consumed(len(events)), what="live applied")
        live = await side.checksums()
        await side.redis.flushdb()
        await side.pool.execute("TRUNCATE rm_smtp_credentials, rm_domains, projector_auth_entries")
        summary = await asyncio.to_thread(rebuild, isolated, "event-store")
        assert summary["events"] == len(events)
        assert await side.checksums() == live


async def test_after_a_database_restore_the_event_store_rebuild_keeps_what_the_restore_removed_out(
    isolated, postgres_server
) -> None:
    """docs/operations.md, Backups: after PostgreSQL is restored to an earlier point, `rebuild --from event-store`.
    Kafka still holds the events written after the backup; the rebuild raises the group's offsets to the logs' ends
    it read first, so the projectors started afterwards never replay them (they brought back a credential the API no
    longer knew, logging in at the relays: a review's probe), and the cache keeps the watermark it had, so relays
    that saw it keep trusting the rebuilt cache."""
    import dataclasses

    from tests.integration.projector.conftest import new_database

    settings = isolated.settings()
    kept, lost, later = Domain(), Domain(), Domain()
    before = [kept.registered(1), kept.verified(2), kept.created(3)]
    after = [lost.registered(4), lost.verified(5), lost.created(6)]  # written after the backup was taken
    await store_events(isolated.database_url, before)
    await produce(isolated.bootstrap, isolated.topic_names, before)
    async with ReadSide(settings) as side, running(settings):
        await eventually(lambda: side.consumed(3), what="first events applied")
    backup_url = await new_database(postgres_server.url, template=isolated.database_url.rsplit("/", 1)[1])
    await store_events(isolated.database_url, after)
    await produce(isolated.bootstrap, isolated.topic_names, after)
    async with ReadSide(settings) as side, running(settings):
        await eventually(lambda: side.consumed(6), what="later events applied")
        assert await side.entry(lost.username) is not None

    restored = dataclasses.replace(isolated, database_url=backup_url)  # PostgreSQL restored to the backup
    summary = await asyncio.to_thread(rebuild, restored, "event-store")
    assert summary["events"] == 3
    async with ReadSide(restored.settings()) as side:
        assert await side.offsets_total() == 6, "offsets at the ends the rebuild read"
        assert int(await side.redis.get(WATERMARK_KEY)) == after[-1].position
        # Written after the restore (the API reuses the lost events' positions): applied, and nothing else.
        new = later.registered(4)
        await store_events(backup_url, [new])
        await produce(isolated.bootstrap, isolated.topic_names, [new])
        async with running(restored.settings()):
            await eventually(lambda: side.consumed(7), what="the write after the restore applied")
            await eventually(lambda: side.count("rm_domains", f"name = '{later.name}'"), what="its domain")
        assert await side.credential(after[2].data.credential_id) is None
        assert await side.entry(lost.username) is None
        assert await side.count("rm_domains", f"name = '{lost.name}'") == 0
        assert await side.entry(kept.username) is not None

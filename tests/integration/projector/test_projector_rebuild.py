"""Rebuild from Kafka offset 0 or from the event store equals the live read side (E9)."""

from __future__ import annotations

import asyncio
import json

import asyncpg
from taifa_events import envelope_to_json

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

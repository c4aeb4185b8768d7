"""The audit feed's projection end to end (issue 17): events through the broker land in rm_audit_events with their
actor, address and request id (events without metadata as `unknown`), once each, without secrets; quota notices
from the relays' Redis list reach it through the usage topic; a rebuild of the dropped feed gives the same feed."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
from taifa_events import Actor, EventMetadata, WebhookEndpointCreated, encode, make_envelope
from taifa_events.usage import QUOTA_NOTICES_KEY, QuotaNotice
from taifa_projector.adapters.postgres import PostgresReadModelStore
from taifa_projector.application.batches import BatchApplier
from taifa_projector.application.checksum import read_side_checksums
from taifa_projector.application.rebuild import rebuild_from_event_store

from tests.integration.projector.projector_harness import ReadSide, eventually, produce, rebuild, running
from tests.integration.projector.test_projector_rebuild import EVENT_STORE_DDL
from tests.integration.projector.test_projector_usage_flush import _usage_settings, usage_worker
from tests.unit.projector.fakes import KEYRING, InMemoryDeadLetters, InMemoryEventStore, record_of
from tests.unit.projector.projector_events import Domain

KEY = EventMetadata(actor=Actor(type="api_key", id=str(uuid.uuid4())), source_ip="203.0.113.5", request_id="req-a")
SESSION = EventMetadata(actor=Actor(type="session", id="user-1"), source_ip="2001:db8::5", request_id="req-b")


def _history() -> tuple[list[Any], Domain]:
    """Two accounts' events, with metadata of two kinds and without (events written before issue 17)."""
    first, second = Domain(), Domain()
    created = first.created(3)
    events = [
        first.registered(1).model_copy(update={"metadata": KEY}),
        first.verified(2).model_copy(update={"metadata": KEY}),
        created.model_copy(update={"metadata": SESSION}),
        first.deactivated(created, 4),  # no metadata: actor unknown
        second.registered(5).model_copy(update={"metadata": SESSION}),
        make_envelope(
            WebhookEndpointCreated(account_id=first.account_id, webhook_id=uuid.uuid4(), url="https://h.example/",
                                   events=["*"]),
            stream_version=1, position=6, correlation_id="req-c", metadata=KEY,
        ),
        first.verification_failed(7, version=3),  # not in the feed
    ]  # fmt: skip
    return events, first


async def _store(database_url: str, events: list[Any]) -> None:
    """The events in the event store with their metadata column (API migration 0005)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(EVENT_STORE_DDL)
        await conn.executemany(
            "INSERT INTO event_store VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12::jsonb)",
            [
                (
                    e.position, e.event_id, e.event_type, e.schema_version, e.stream_id, e.stream_version, e.topic,
                    e.key.decode(), e.occurred_at, e.correlation_id, json.dumps(json.loads(encode(e))["data"]),
                    None if e.metadata is None else e.metadata.model_dump_json(),
                )
                for e in events
            ],
        )  # fmt: skip
    finally:
        await conn.close()


async def _feed(side: ReadSide) -> list[asyncpg.Record]:
    return list(await side.pool.fetch("SELECT * FROM rm_audit_events ORDER BY position, id"))


async def test_feed_rows_once_each_with_their_actor_then_rebuilt_from_nothing(isolated) -> None:
    settings = await _usage_settings(isolated)
    events, first = _history()
    await _store(isolated.database_url, events)
    await produce(isolated.bootstrap, isolated.topic_names, events + events[:3])  # with redeliveries
    async with ReadSide(settings) as side:
        async with running(settings):
            await eventually(lambda: _rows(side, 6), what="feed rows")
            await eventually(lambda: side.consumed(len(events) + 3), what="all consumed")
        rows = await _feed(side)
        assert [r["type"] for r in rows] == [
            "domain.created", "domain.verified", "smtp_credential.created", "smtp_credential.deactivated",
            "domain.created", "webhook.created",
        ]  # fmt: skip
        assert [r["id"] for r in rows] == [e.event_id for e in events[:6]]
        assert (rows[0]["actor_type"], rows[0]["actor_id"], rows[0]["source_ip"], rows[0]["request_id"]) == (
            "api_key", KEY.actor.id, "203.0.113.5", "req-a",
        )  # fmt: skip
        actors = [(r["actor_type"], r["actor_id"], r["source_ip"]) for r in rows]
        assert actors[2] == ("session", "user-1", "2001:db8::5")
        assert actors[3] == ("unknown", None, None)
        assert {r["account_id"] for r in rows[:4]} == {first.account_id}
        assert rows[2]["subject_type"] == "smtp_credential" and rows[2]["subject_id"] == events[2].data.credential_id
        everything = json.dumps([dict(r) for r in rows], default=str)
        assert events[2].data.secret_hash not in everything and "secret_hash" not in everything
        assert "taifa-verification=" not in everything

        # A quota notice, as a relay pushes it, reaches the feed through the flusher and the usage topic, once.
        notice = QuotaNotice(account_id=first.account_id, credential_id=events[2].data.credential_id,
                             day="20261128", percent=80, count=160, quota=200, at=events[2].occurred_at)  # fmt: skip
        await side.redis.lpush(QUOTA_NOTICES_KEY, notice.model_dump_json(), notice.model_dump_json())
        async with usage_worker(settings):
            await eventually(lambda: _rows(side, 7), what="quota notice in the feed")
        quota = await side.pool.fetchrow("SELECT * FROM rm_audit_events WHERE type = 'smtp_credential.quota_reached'")
        assert quota["position"] == 0 and quota["actor_type"] == "system" and quota["account_id"] == first.account_id
        assert len(await _feed(side)) == 7

        live = await side.checksums()
        live_feed = await _feed(side)
        # Drop the events' part of the feed (and the other read models); a rebuild from the event store gives it
        # back, the quota notice (not in the event store) kept.
        await side.pool.execute("DELETE FROM rm_audit_events WHERE position > 0")
        await side.pool.execute("TRUNCATE rm_smtp_credentials, rm_domains, projector_auth_entries")
        summary = await asyncio.to_thread(rebuild, isolated, "event-store")
        assert summary["events"] == len(events)
        assert await _feed(side) == live_feed
        assert await side.checksums() == live
        # A rebuild from Kafka gives the same feed too.
        await asyncio.to_thread(rebuild, isolated, "kafka")
        assert await _feed(side) == live_feed


async def test_a_live_batch_after_a_rebuild_swap_writes_to_the_swapped_in_tables(isolated) -> None:
    """One pooled connection prepares the live statements (feed insert, upserts) before a rebuild drops the live
    tables and renames the rebuilt ones into place; its next live batch must land in the new tables, not be lost
    with the dropped ones (a cached statement bound to an old relation would be a silent loss of feed rows)."""
    d = Domain()
    created = d.created(3)
    events = [d.registered(1), d.verified(2), created, d.deactivated(created, 4)]
    records = [record_of(e, offset) for offset, e in enumerate(events)]
    async with ReadSide(isolated.settings()) as side:
        pool = await asyncpg.create_pool(isolated.database_url, min_size=1, max_size=1)  # the same connection
        try:
            store = PostgresReadModelStore(pool, isolated.settings().projector_group_id)
            applier = BatchApplier(store, side.cache, InMemoryDeadLetters(), keyring=KEYRING, max_attempts=2,
                                   retry_initial=0, retry_max=0)  # fmt: skip
            await applier.process(records[:2])
            await rebuild_from_event_store(InMemoryEventStore(events[:2]), store, side.cache, chunk=3)
            await applier.process(records[2:])
            live = await read_side_checksums(store, side.cache)
        finally:
            await pool.close()
        conn = await asyncpg.connect(isolated.database_url)  # a fresh session: the tables now in place
        try:
            feed = await conn.fetch("SELECT id FROM rm_audit_events ORDER BY position")
            credential = await conn.fetchrow(
                "SELECT is_active FROM rm_smtp_credentials WHERE credential_id = $1", created.data.credential_id
            )
        finally:
            await conn.close()
        assert [r["id"] for r in feed] == [e.event_id for e in events]
        assert credential is not None and credential["is_active"] is False
        await rebuild_from_event_store(InMemoryEventStore(events), side.store, side.cache, chunk=3)
        assert await side.checksums() == live


async def _rows(side: ReadSide, at_least: int) -> bool:
    return await side.count("rm_audit_events") >= at_least

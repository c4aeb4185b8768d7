"""Credential lifecycle on the real stores (issue 15): the read model's status, restrictions and secrets, the
format-2 cache entry, and "live = rebuilt from Kafka = rebuilt from the event store" for lifecycle events, on
PostgreSQL, Redis and the Kafka-protocol broker."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from taifa_events import Envelope, hash_secret
from taifa_projector.application.batches import BatchApplier
from taifa_projector.application.checksum import read_side_checksums
from taifa_projector.application.rebuild import rebuild_from_event_store, rebuild_from_kafka

from tests.integration.projector.projector_harness import ReadSide, eventually, produce, rebuild, running
from tests.integration.projector.test_projector_rebuild import store_events
from tests.unit.projector.fakes import KEYRING, TOPIC, InMemoryDeadLetters, InMemoryEventStore, record_of
from tests.unit.projector.lifecycle_commands import command_lists, events_of
from tests.unit.projector.projector_events import Domain, at, restricted, resumed, rotated, secret_revoked, suspended
from tests.unit.projector.test_projector_lifecycle_property import _Log


def _lifecycle() -> tuple[Domain, list[Envelope[Any]], dict[str, Any]]:
    d = Domain()
    created = d.created(1)
    r1 = rotated(d, created, 3, created.data.secret_id, grace=0)
    r2 = rotated(d, created, 4, r1.data.secret_id, grace=3600, secret="the-newest")
    events = [
        created,
        r1,
        r2,
        secret_revoked(d, created, 5, r1.data.secret_id),
        suspended(d, created, 6),
        resumed(d, created, 7),
        suspended(d, created, 8, reason="complaints"),
        restricted(d, created, 9, ["203.0.113.0/24", "2001:db8::/48"], 3600, 20, 1000),
    ]
    return d, events, {"created": created, "r1": r1, "r2": r2}


async def test_lifecycle_events_reach_the_read_model_and_the_v2_cache_entry(isolated) -> None:
    settings_ = isolated.settings()
    d, events, named = _lifecycle()
    await store_events(isolated.database_url, events)
    await produce(isolated.bootstrap, isolated.topic_names, events)
    credential_id = named["created"].data.credential_id
    async with ReadSide(settings_) as side:
        async with running(settings_):
            await eventually(lambda: side.count("rm_smtp_credentials", "position = 9"), what="lifecycle applied")
        row = await side.credential(credential_id)
        assert row["status"] == "suspended" and row["is_active"] and row["suspension_reason"] == "complaints"
        assert row["suspended_at"] == at(8) and row["expires_at"] == at(3609)
        assert list(row["allowed_cidrs"]) == ["203.0.113.0/24", "2001:db8::/48"]
        assert (row["limit_messages_per_minute"], row["limit_messages_per_day"]) == (20, 1000)
        assert row["last_used_at"] is None and row["last_used_ip"] is None
        secrets = await side.pool.fetch(
            "SELECT secret_id, expires_at, revoked_at FROM rm_credential_secrets WHERE credential_id = $1 "
            "ORDER BY created_at DESC",
            credential_id,
        )
        assert [s["secret_id"] for s in secrets] == [
            named["r2"].data.secret_id, named["r1"].data.secret_id, named["created"].data.secret_id,
        ]  # fmt: skip
        assert secrets[1]["revoked_at"] == at(5) and secrets[2]["expires_at"] == at(3)

        entry = await side.entry(d.username)
        assert entry is not None and entry.status == "suspended" and entry.active and entry.position == 9
        # r1 revoked, the first secret's grace ended (grace 0) before r2: neither is in the cache.
        assert [s.id for s in entry.secrets] == [named["r2"].data.secret_id]
        assert entry.secret_hash == hash_secret("the-newest") and entry.allowed_cidrs == (
            "203.0.113.0/24", "2001:db8::/48",
        )  # fmt: skip
        assert entry.expires_at == int(at(3609).timestamp()) and entry.limits.messages_per_day == 1000
        assert (await side.redis.hget(f"taifa:auth:user:{d.username.lower()}", "format")) == b"2"

        live = await side.checksums()
        assert (await asyncio.to_thread(rebuild, isolated, "kafka"))["events"] == len(events)
        assert await side.checksums() == live
        await side.redis.flushdb()
        await side.pool.execute("TRUNCATE rm_smtp_credentials, rm_credential_secrets, projector_auth_entries")
        assert (await asyncio.to_thread(rebuild, isolated, "event-store"))["events"] == len(events)
        assert await side.checksums() == live


async def _same_read_side(isolated: Any, events: list[Envelope[Any]], cuts: list[int], redeliver: list[bool]) -> None:
    async with ReadSide(isolated.settings()) as side:
        await _reset(side)
        applier = BatchApplier(
            side.store, side.cache, InMemoryDeadLetters(), keyring=KEYRING, max_attempts=2, retry_initial=0,
            retry_max=0,
        )  # fmt: skip
        records = [record_of(e, offset) for offset, e in enumerate(events)]
        bounds = sorted({0, len(records), *(c % (len(records) + 1) for c in cuts)})
        previous: list[Any] = []
        for (start, end), again in zip(itertools.pairwise(bounds), redeliver + [False] * len(bounds), strict=False):
            batch = records[start:end]
            await applier.process(batch)
            if again:
                await applier.process(previous + batch)
            previous = batch
        live = await read_side_checksums(side.store, side.cache)

        await _reset(side)
        await rebuild_from_event_store(InMemoryEventStore(events), side.store, side.cache, chunk=3)
        assert await read_side_checksums(side.store, side.cache) == live

        await _reset(side)
        await rebuild_from_kafka(side.store, side.cache, _Log(records), [TOPIC], keyring=KEYRING, chunk=3)
        assert await read_side_checksums(side.store, side.cache) == live


async def _reset(side: ReadSide) -> None:
    await side.redis.flushdb()
    await side.pool.execute(
        "TRUNCATE rm_smtp_credentials, rm_credential_secrets, rm_domains, projector_auth_entries, "
        "projector_parked_events, projector_processed_events, projector_offsets, rm_audit_events"
    )
    side.cache.highest_watermark = 0


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(command_lists, st.lists(st.integers(0, 40), max_size=4), st.lists(st.booleans(), max_size=4))
def test_any_lifecycle_sequence_on_postgres_and_redis_gives_the_same_read_side_live_and_rebuilt(
    isolated, commands, cuts, redeliver
) -> None:
    events = events_of(commands)
    if events:
        asyncio.run(_same_read_side(isolated, events, cuts, redeliver))

"""Failures: poison messages to the DLQ, PostgreSQL restart, Redis flush and restart from an old snapshot."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.exceptions import RedisError
from taifa_events import envelope_to_json, topics
from taifa_localstack import Postgres
from taifa_relay.adapters.auth_cache import CacheUnavailable
from taifa_relay.adapters.auth_cache import RedisAuthCacheReader as RelayAuthCache

from tests.integration.projector.conftest import Isolated, migrate, own_redis
from tests.integration.projector.projector_harness import ReadSide, eventually, holds, metric, produce, running
from tests.unit.projector.projector_events import Domain


async def read_dlq(bootstrap: str, topic: str, want: int) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        seen: list = []
        async with asyncio.timeout(30):
            while len(seen) < want:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    seen += messages
        return seen
    finally:
        await consumer.stop()


async def test_poison_messages_go_to_the_dlq_with_headers_and_the_partition_moves_on(isolated) -> None:
    settings = isolated.settings(projector_max_attempts=3)
    d = Domain()
    before = d.created(1)
    after = d.created(3)  # same key as the poison: same partition, behind it
    future_version = envelope_to_json(d.created(2))
    future_version["schema_version"] = 99
    nul = d.created(4)
    nul_raw = envelope_to_json(nul)
    nul_raw["data"]["domain"] = "bad\u0000domain"  # decodes, but PostgreSQL refuses the text: rejected
    credentials = topics.SMTP_CREDENTIALS
    key = str(d.domain_id).encode()
    raw = [
        (credentials, key, b"{not json"),
        (credentials, key, json.dumps(future_version).encode()),
        (credentials, key, json.dumps(nul_raw).encode()),
    ]
    await produce(isolated.bootstrap, isolated.topic_names, [before], raw=raw)
    await produce(isolated.bootstrap, isolated.topic_names, [after])
    async with ReadSide(settings) as side, running(settings) as projector:
        await eventually(lambda: side.offsets_total(), what="offsets recorded")
        await eventually(lambda: side.committed(5), what="all five records consumed")
        await eventually(holds(lambda: projector.totals.dead_lettered == 3), what="dead letters counted")
        assert {r["credential_id"] for r in await side.pool.fetch("SELECT credential_id FROM rm_smtp_credentials")} == {
            before.data.credential_id,
            after.data.credential_id,
        }
    dlq = await read_dlq(isolated.bootstrap, topics.dead_letter_topic(isolated.topic_names[credentials]), 3)
    headers = [dict((k, v.decode()) for k, v in m.headers) for m in dlq]
    assert [h["taifa-dlq-reason"] for h in headers] == ["undecodable", "undecodable", "rejected"]
    assert {h["taifa-dlq-source-topic"] for h in headers} == {isolated.topic_names[credentials]}
    assert [int(h["taifa-dlq-source-offset"]) for h in headers] == [1, 2, 3]
    assert len({h["taifa-dlq-source-partition"] for h in headers}) == 1
    assert [h["taifa-dlq-attempts"] for h in headers] == ["1", "1", "3"]
    assert "schema_version 99" in headers[1]["taifa-dlq-error"]
    assert dlq[0].value == b"{not json" and all(m.key == key for m in dlq)


async def test_postgres_restart_pauses_consumption_commits_nothing_and_catches_up_without_dlq(
    tmp_path, redis_server, kafka_broker
) -> None:
    postgres = Postgres(tmp_path / "pg")
    await asyncio.to_thread(postgres.start)
    try:
        await asyncio.to_thread(migrate, postgres.url)
        from tests.integration.projector.conftest import new_topics, redis_url_for

        isolated = Isolated(
            postgres.url, redis_url_for(redis_server.url), kafka_broker.bootstrap,
            await new_topics(kafka_broker.bootstrap), f"g{uuid.uuid4().hex[:8]}",
        )  # fmt: skip
        settings = isolated.settings()
        domains = [Domain() for _ in range(40)]
        first = [d.created(i + 1) for i, d in enumerate(domains[:20])]
        second = [d.created(i + 21) for i, d in enumerate(domains[20:])]
        transient_before = metric("taifa_projector_transient_failures_total", {"store": "postgres"})
        dlq_before = sum(
            metric("taifa_projector_dlq_total", {"topic": isolated.topic_names[topics.SMTP_CREDENTIALS], "reason": r})
            for r in ("undecodable", "rejected")
        )
        async with running(settings) as projector:
            await produce(isolated.bootstrap, isolated.topic_names, first)
            async with ReadSide(settings) as side:
                await eventually(lambda: _rows_are(side, 20), what="first events applied")
            # A fast shutdown (SIGINT) closes the projector's sessions; SIGKILL would lose the last commits of
            # this throw-away server, which runs with synchronous_commit=off.
            os.kill(postgres.pid, signal.SIGINT)
            await asyncio.to_thread(postgres.stop)
            await produce(isolated.bootstrap, isolated.topic_names, second)
            await eventually(
                holds(
                    lambda: metric("taifa_projector_transient_failures_total", {"store": "postgres"}) > transient_before
                ),
                what="projector noticed PostgreSQL is down",
            )
            await asyncio.to_thread(postgres.start)
            async with ReadSide(settings) as side:
                await eventually(lambda: _rows_are(side, 40), timeout=60, what="caught up after the restart")
                await eventually(lambda: side.consumed(40), what="caught up in the cache")
                for d in domains:
                    entry = await side.entry(d.username)
                    assert entry is not None and entry.active
            assert projector.totals.dead_lettered == 0
        dlq_after = sum(
            metric("taifa_projector_dlq_total", {"topic": isolated.topic_names[topics.SMTP_CREDENTIALS], "reason": r})
            for r in ("undecodable", "rejected")
        )
        assert dlq_after == dlq_before
    finally:
        await asyncio.to_thread(postgres.stop)


async def _rows_are(side: ReadSide, total: int) -> bool:
    return await side.count("rm_smtp_credentials") == total


async def test_redis_flush_is_detected_and_the_cache_rebuilt_while_events_keep_flowing(isolated) -> None:
    settings = isolated.settings()
    domains = [Domain() for _ in range(30)]
    created = [d.created(i + 1) for i, d in enumerate(domains)]
    gone = [d.deactivated(c, 100 + i) for i, (d, c) in enumerate(zip(domains[:10], created[:10], strict=True))]
    async with ReadSide(settings) as side, running(settings):
        await produce(isolated.bootstrap, isolated.topic_names, created + gone)
        await eventually(lambda: side.consumed(40), what="applied")
        before = await side.checksums()
        await side.redis.flushdb()
        later = Domain()
        await produce(isolated.bootstrap, isolated.topic_names, [later.created(500)])
        await eventually(lambda: _rows_are(side, 31), what="new event applied after the flush")
        await eventually(lambda: _entries_are(side, 31), what="cache rebuilt")
        for d in domains[:10]:
            entry = await side.entry(d.username)
            assert entry is not None and not entry.active
        assert (await side.entry(later.username)).active
        assert metric("taifa_projector_cache_rebuilds_total", {"reason": "epoch_missing"}) >= 1
        assert await side.redis.exists("taifa:auth:epoch")
        assert before["rm_smtp_credentials"] != (await side.checksums())["rm_smtp_credentials"]


async def _entries_are(side: ReadSide, total: int) -> bool:
    return len(await side.cache.all_entries()) == total and bool(await side.redis.exists("taifa:auth:epoch"))


async def test_redis_restart_from_an_old_snapshot_never_leaves_a_revoked_credential_active(
    tmp_path, postgres_server, kafka_broker, migrated_template
) -> None:
    async with own_redis(tmp_path, postgres_server, kafka_broker, migrated_template) as (redis, isolated):
        settings = isolated.settings()
        domains = [Domain() for _ in range(10)]
        created = [d.created(i + 1) for i, d in enumerate(domains)]
        async with ReadSide(settings) as side, running(settings):
            await produce(isolated.bootstrap, isolated.topic_names, created)
            await eventually(lambda: side.consumed(10), what="created")
            await side.redis.save()  # the "old snapshot": every credential active
            gone = [d.deactivated(c, 100 + i) for i, (d, c) in enumerate(zip(domains, created, strict=True))]
            await produce(isolated.bootstrap, isolated.topic_names, gone)
            await eventually(lambda: side.consumed(20), what="revoked")
            # A relay's view of the cache: it has read the post-revocation watermark before the restart.
            relay_view = RelayAuthCache(redis.url, failure_window_seconds=60)
            try:
                await eventually(lambda: _relay_refuses_all(relay_view, domains), what="relay saw the revocations")
                await asyncio.to_thread(redis.restart)
                # At once and until the projector has repaired it, no revoked credential looks active to the
                # relay: the old snapshot is refused as a whole (watermark behind: "stale", 454), never served.
                # (Whether the first look still finds the snapshot depends on how fast the projector repairs
                # it; tests/integration/relay/test_cache_trust.py restores an old RDB with no projector.)
                views = [await _relay_view(relay_view, domains)]
                assert views[0] in ("stale", "refuses"), views
                while not await _repaired(side, domains) or views[-1] != "refuses":
                    views.append(await _relay_view(relay_view, domains))
                    assert views[-1] in ("stale", "refuses"), views
                    assert len(views) < 3000, "stale snapshot not repaired"
                    await asyncio.sleep(0.01)
            finally:
                await relay_view.close()
        assert metric("taifa_projector_cache_rebuilds_total", {"reason": "cache_behind_read_model"}) >= 1


async def _relay_view(relay_view: RelayAuthCache, domains: list[Domain]) -> str:
    """What the relay's AUTH lookup makes of the revoked credentials now: "stale" (454, the cache is not
    trusted), "refuses" (every entry missing or inactive: 535) or "ACTIVE" (a revoked credential would log in)."""
    try:
        for d in domains:
            found = await relay_view.lookup(d.username, "snapshot-test")
            if found.entry is not None and found.entry.active:
                return "ACTIVE"
    except CacheUnavailable:
        return "stale"
    return "refuses"


async def _repaired(side: ReadSide, domains: list[Domain]) -> bool:
    try:
        return await _all_revoked(side, domains)
    except RedisError:  # the harness's own connection, cut by the restart
        return False


async def _relay_refuses_all(relay_view: RelayAuthCache, domains: list[Domain]) -> bool:
    return await _relay_view(relay_view, domains) == "refuses"


async def _all_revoked(side: ReadSide, domains: list[Domain]) -> bool:
    for d in domains:
        entry = await side.entry(d.username)
        if entry is None or entry.active:
            return False
    return True

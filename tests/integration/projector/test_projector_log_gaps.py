"""Retention gaps (item 7): a partition whose log starts after the recorded offset is stopped, never skipped;
a Kafka rebuild of a log that no longer starts at 0 is refused; a NEW log (recorded offset past its end) is
still read again from 0.

The local broker (Tansu 0.6) cannot delete records: it closes the connection on DeleteRecords
(`AIOKafkaAdminClient.delete_records`) and keeps no retention. So a trimmed log is simulated at the one
seam that asks the broker where a log starts: `Projector._log_starts` (the consumer's
`beginning_offsets`) and the `log_starts` of the `EventLog` port `rebuild_from_kafka` reads. Everything
else is real: the broker, the consumer group, PostgreSQL, Redis; the decision itself is unit-tested in
tests/unit/projector.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiokafka import TopicPartition
from prometheus_client import REGISTRY
from taifa_events import topics
from taifa_projector.adapters.event_store import PostgresEventStoreReader
from taifa_projector.adapters.kafka_topics import KafkaTopics
from taifa_projector.adapters.postgres import PostgresReadModelStore
from taifa_projector.adapters.redis_cache import RedisAuthCacheWriter
from taifa_projector.application.ports import EventLog, LogChunk
from taifa_projector.application.rebuild import rebuild_from_event_store, rebuild_from_kafka
from taifa_projector.domain.log_positions import LogNotFromZero, TopicPartitionKey
from taifa_projector.entrypoints.consume_loop import Projector
from taifa_projector.settings import Settings

from tests.integration.projector.projector_harness import ReadSide, eventually, holds, produce, running
from tests.integration.projector.test_projector_rebuild import store_events
from tests.unit.projector.projector_events import Domain


class TrimmedLogProjector(Projector):
    """A projector whose broker says `trimmed` partitions start at the given offsets (retention deleted the rest)."""

    def __init__(self, settings: Settings, trimmed: dict[TopicPartitionKey, int]) -> None:
        super().__init__(settings, health=False)
        self.trimmed = trimmed

    async def _log_starts(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        real = await super()._log_starts(partitions)
        return {tp: self.trimmed.get((tp.topic, tp.partition), start) for tp, start in real.items()}


class TrimmedLog:
    """An `EventLog` whose broker says `trimmed` partitions start at the given offsets."""

    def __init__(self, log: EventLog, trimmed: dict[TopicPartitionKey, int]) -> None:
        self.log = log
        self.trimmed = trimmed

    async def log_starts(self, topic_names: Sequence[str]) -> dict[TopicPartitionKey, int]:
        return {**await self.log.log_starts(topic_names), **self.trimmed}

    def read_to_end(self, topic_names: Sequence[str]) -> AsyncIterator[LogChunk]:
        return self.log.read_to_end(topic_names)


@contextlib.asynccontextmanager
async def running_trimmed(settings: Settings, trimmed: dict[TopicPartitionKey, int]) -> AsyncIterator[Projector]:
    projector = TrimmedLogProjector(settings, trimmed)
    await projector.start()
    stop = asyncio.Event()
    task = asyncio.create_task(projector.consume(stop))
    try:
        yield projector
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            await projector.close()


def _gap_metric(key: TopicPartitionKey) -> float | None:
    return REGISTRY.get_sample_value("taifa_projector_log_gap", {"topic": key[0], "partition": str(key[1])})


async def test_a_partition_whose_log_starts_after_the_recorded_offset_is_stopped_until_rebuilt_from_the_event_store(
    isolated, caplog
) -> None:
    settings = isolated.settings()
    domains_topic = isolated.topic_names[topics.DOMAINS]
    first = Domain()
    early = [first.registered(1), first.verified(2), first.created(3)]
    await produce(isolated.bootstrap, isolated.topic_names, early)
    async with ReadSide(settings) as side:
        async with running(settings) as projector:
            await eventually(holds(lambda: projector.totals.applied == 3), what="first events applied")
        recorded = await side.store.load_offsets()

        # Two more events; then "retention" deletes the domain partitions' records from the recorded offset on:
        # the registration of `later` is gone from Kafka before this group applied it.
        later = Domain()
        late = [later.registered(10), later.created(11)]
        await produce(isolated.bootstrap, isolated.topic_names, late)
        trimmed = {(domains_topic, p): recorded.get((domains_topic, p), 0) + 1 for p in range(3)}

        async with running_trimmed(settings, trimmed) as projector:
            # The other topics go on: the new credential is applied...
            await eventually(
                lambda: side.count("rm_smtp_credentials", f"username = '{later.username}'"), what="credential"
            )
            # ... while every domain partition is paused where it was, reported, and the instance is not ready.
            paused = {(tp.topic, tp.partition) for tp in projector.consumer.paused()}
            assert set(trimmed) <= paused
            assert set(projector.log_gaps.gaps) == set(trimmed)
            assert not await projector.ready()
            assert all(_gap_metric(key) == 1 for key in trimmed)
            assert await side.count("rm_domains", f"name = '{later.name}'") == 0
            after = await side.store.load_offsets()
            assert {k: v for k, v in after.items() if k[0] == domains_topic} == {
                k: v for k, v in recorded.items() if k[0] == domains_topic
            }
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and "log gap" in r.getMessage()]
        some = next(key for key in trimmed if key in recorded)
        assert any(
            f"{some[0]}[{some[1]}]: recorded offset {recorded[some]}, but the log starts at offset {trimmed[some]}" in m
            and "rebuild --from event-store" in m
            for m in errors
        ), errors
        assert all(_gap_metric(key) == 0 for key in trimmed)  # the instance left: its gaps went with it

        # The way out: a rebuild from the event store (the log of record), which raises the offsets to where the
        # logs ended when it began (here the trimmed logs' starts stand in for those ends: the least an end can be);
        # the projector then runs without a gap and is ready.
        await store_events(isolated.database_url, early + late)
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        client = aioredis.Redis.from_url(settings.redis_url)
        try:
            store = PostgresReadModelStore(pool, settings.projector_group_id)
            await rebuild_from_event_store(
                PostgresEventStoreReader(pool),
                store,
                RedisAuthCacheWriter(client, settings.projector_group_id),
                log_ends_before=trimmed,
            )
        finally:
            await client.aclose()
            await pool.close()
        rebuilt = await side.store.load_offsets()
        assert all(rebuilt[key] == start for key, start in trimmed.items())
        assert await side.count("rm_domains", f"name = '{later.name}'") == 1
        async with running_trimmed(settings, trimmed) as projector:
            await eventually(projector.ready, what="ready after the rebuild")
            assert not projector.log_gaps


async def test_a_recorded_offset_past_the_end_of_a_new_log_reads_it_again_from_zero(isolated, caplog) -> None:
    """The local broker forgets everything when it stops; a recreated topic does the same in production."""
    settings = isolated.settings()
    d = Domain()
    await produce(isolated.bootstrap, isolated.topic_names, [d.registered(1), d.verified(2), d.created(3)])
    async with ReadSide(settings) as side:
        # Offsets recorded while consuming a longer, earlier log of the same topics.
        await side.pool.execute(
            "INSERT INTO projector_offsets (group_id, topic, partition, next_offset) "
            "SELECT $1, t, p, 1000 FROM unnest($2::text[]) AS t, generate_series(0, 2) AS p",
            settings.projector_group_id,
            list(isolated.topic_names.values()),
        )
        async with running(settings) as projector:
            await eventually(lambda: side.count("rm_smtp_credentials", f"username = '{d.username}'"), what="replayed")
            await eventually(lambda: side.count("rm_domains", f"name = '{d.name}' AND status = 'verified'"))
            assert not projector.log_gaps and await projector.ready()
        offsets = await side.store.load_offsets()
        assert sum(1 for offset in offsets.values() if offset < 1000) >= 2  # the partitions read again
        assert any("past the end of the log" in r.getMessage() for r in caplog.records)


async def test_rebuild_from_kafka_is_refused_before_any_change_when_a_partition_no_longer_starts_at_zero(
    isolated,
) -> None:
    settings = isolated.settings()
    d = Domain()
    await produce(isolated.bootstrap, isolated.topic_names, [d.registered(1), d.verified(2), d.created(3)])
    domains_partition = (isolated.topic_names[topics.DOMAINS], 2)

    trimmed_log = TrimmedLog(KafkaTopics(settings.kafka_client_options()), {domains_partition: 7})

    async with ReadSide(settings) as side:
        async with running(settings) as projector:
            await eventually(holds(lambda: projector.totals.applied == 3), what="applied")
        before = await side.checksums()
        offsets = await side.store.load_offsets()
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        client = aioredis.Redis.from_url(settings.redis_url)
        try:
            store = PostgresReadModelStore(pool, settings.projector_group_id)
            cache = RedisAuthCacheWriter(client, settings.projector_group_id)
            with pytest.raises(LogNotFromZero) as refused:
                await rebuild_from_kafka(
                    store, cache, trimmed_log, settings.projector_topics, keyring=settings.event_keyring(),
                )  # fmt: skip
            assert await side.checksums() == before
            assert await side.store.load_offsets() == offsets
            # The real log starts at 0 everywhere: the same rebuild without the simulated trim runs.
            summary = await rebuild_from_kafka(
                store, cache, KafkaTopics(settings.kafka_client_options()), settings.projector_topics,
                keyring=settings.event_keyring(),
            )  # fmt: skip
        finally:
            await client.aclose()
            await pool.close()
        message = str(refused.value)
        assert f"{domains_partition[0]}[2] starts at offset 7" in message and "--from event-store" in message
        assert summary.events == 3
        assert await side.checksums() == before


def test_the_rebuild_command_refuses_a_trimmed_log_in_one_message_and_exit_1_without_a_traceback(
    isolated, monkeypatch
) -> None:
    from taifa_projector.entrypoints import cli
    from typer.testing import CliRunner

    partition = (isolated.topic_names[topics.DOMAINS], 1)

    async def rebuild_from_trimmed_log(store, cache, log, *args, **kwargs):
        return await rebuild_from_kafka(store, cache, TrimmedLog(log, {partition: 42}), *args, **kwargs)

    monkeypatch.setattr(cli, "rebuild_from_kafka", rebuild_from_trimmed_log)
    for name, value in isolated.env().items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli.app, ["rebuild", "--from", "kafka"])
    said = " ".join((result.output + result.stderr).split())
    assert result.exit_code == 1, said
    assert f"{partition[0]}[1] starts at offset 42" in said and "rebuild with `--from event-store`" in said
    assert "Traceback" not in said and isinstance(result.exception, SystemExit)  # a refusal, not a crash

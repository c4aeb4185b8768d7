"""The outbox publisher against a real broker: order, keys, headers, LISTEN/NOTIFY wake-up, one leader,
crash-and-resume without a gap (SIGKILL of a real `taifa-api serve`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections import defaultdict
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata
from api_support import consume_all, create_database, running_api, venv_bin
from taifa_api.adapters import database, migrate
from taifa_api.adapters.broker_log import BrokerLogWatch
from taifa_api.adapters.publisher import OutboxPublisher
from taifa_api.adapters.unit_of_work import unit_of_work_factory
from taifa_api.application import use_cases
from taifa_events import declared_type, decode, topics
from taifa_events.signing import signature_of
from taifa_localstack import TOPIC_PARTITIONS, ServiceProcess, Tansu, create_topics, free_port, wait_until

from tests.event_signing import signing_keyring


@contextlib.asynccontextmanager
async def publishing(database_url: str, bootstrap: str, idle_poll: float = 30.0):
    publisher = OutboxPublisher(
        database_url, bootstrap, keyring=signing_keyring(), idle_poll_seconds=idle_poll, retry_seconds=0.2
    )
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        yield publisher
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def max_position(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM event_store"))
    finally:
        await conn.close()


async def wait_published(database_url: str, position: int, timeout: float = 20) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        async with asyncio.timeout(timeout):
            while (await conn.fetchval("SELECT last_position FROM publisher_progress") or 0) < position:
                await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def some_events(pool: asyncpg.Pool, tenants: int = 3) -> None:
    uow = unit_of_work_factory(pool)
    for _ in range(tenants):
        account = (await use_cases.create_account(uow, "t", "pro", "test")).value.account_id
        domain = (await use_cases.register_domain(uow, account, f"{uuid.uuid4().hex[:8]}.example", "c")).value
        await use_cases.force_verify_domain(uow, domain.domain_id, "c")
        created = await use_cases.create_credential(uow, account, domain.domain_id, {"pro": 25}, "c")
        await use_cases.deactivate_credential(uow, account, created.value.record.credential_id, "c")


async def test_events_reach_kafka_in_position_order_with_key_value_and_headers(api_db, broker) -> None:
    pool = await database.create_pool(api_db, min_size=1, max_size=4)
    try:
        await some_events(pool)
        last = await max_position(api_db)
        async with publishing(api_db, broker.bootstrap):
            await wait_published(api_db, last)
        messages = await consume_all(broker.bootstrap, last)
        rows = {r["position"]: r for r in await pool.fetch("SELECT * FROM event_store")}
    finally:
        await pool.close()
    assert sorted(decode(m.value).position for m in messages) == list(range(1, last + 1))
    by_partition: dict[tuple[str, int], list[int]] = defaultdict(list)
    for message in messages:
        envelope = decode(message.value)
        row = rows[envelope.position]
        assert message.topic == row["topic"]
        assert message.key == row["partition_key"].encode() == envelope.key
        headers = dict(message.headers)
        assert headers == {
            "event_type": envelope.event_type.encode(),
            "event_id": str(envelope.event_id).encode(),
            "schema_version": str(envelope.schema_version).encode(),
            "taifa-signature": headers["taifa-signature"],
            "taifa-signature-key-id": os.environ["TAIFA_EVENT_SIGNING_KEY_ID"].encode(),
        }
        # Signed over the exact value bytes with the configured key: what the projector verifies.
        assert (
            signing_keyring().verify(message.value, signature_of(message.headers))
            == headers["taifa-signature-key-id"].decode()
        )
        assert declared_type(message.headers) == (envelope.event_type, envelope.schema_version)
        by_partition[(message.topic, message.partition)].append(envelope.position)
    for positions in by_partition.values():
        assert positions == sorted(positions)
    # Credential events are keyed by domain id: created and deactivated share a partition, in order.
    credential_keys = {m.key for m in messages if m.topic == "taifa.smtp-credentials"}
    assert all(uuid.UUID(k.decode()) for k in credential_keys)


async def test_publisher_wakes_on_notify_not_on_a_slow_poll(api_db, broker) -> None:
    pool = await database.create_pool(api_db, min_size=1, max_size=2)
    try:
        async with publishing(api_db, broker.bootstrap, idle_poll=60) as publisher:
            await wait_published(api_db, await max_position(api_db))
            await asyncio.sleep(0.3)  # let it go idle on LISTEN (not a synchronisation point)
            await use_cases.create_account(unit_of_work_factory(pool), "wake", "free", "test")
            target = await max_position(api_db)
            await wait_published(api_db, target, timeout=5)  # far below the 60 s poll
            assert publisher.published_position == target
    finally:
        await pool.close()


async def test_only_one_publisher_is_active_and_a_standby_takes_over(api_db, broker) -> None:
    pool = await database.create_pool(api_db, min_size=1, max_size=2)
    publishers = [
        OutboxPublisher(api_db, broker.bootstrap, keyring=signing_keyring(), idle_poll_seconds=30, retry_seconds=0.2)
        for _ in range(2)
    ]
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(p.run(s)) for p, s in zip(publishers, stops, strict=True)]
    try:
        await asyncio.to_thread(wait_until, lambda: any(p.is_leader for p in publishers), 10, "a leader")
        await some_events(pool, tenants=1)
        await wait_published(api_db, await max_position(api_db))
        assert [p.is_leader for p in publishers].count(True) == 1
        leader = next(i for i, p in enumerate(publishers) if p.is_leader)
        stops[leader].set()
        await asyncio.wait_for(tasks[leader], 20)
        standby = publishers[1 - leader]
        await asyncio.to_thread(wait_until, lambda: standby.is_leader, 10, "the standby leads")
        await some_events(pool, tenants=1)
        target = await max_position(api_db)
        await wait_published(api_db, target)
        assert standby.published_position == target
    finally:
        for stop in stops:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)
        await pool.close()


async def test_publisher_resumes_after_sigkill_without_a_gap(api_db, broker, tmp_path, api_redis) -> None:
    port = free_port()
    env = {
        "TAIFA_DATABASE_URL": api_db,
        "TAIFA_REDIS_URL": api_redis,
        "TAIFA_KAFKA_BOOTSTRAP": broker.bootstrap,
        "TAIFA_API_PORT": str(port),
        "TAIFA_API_HOST": "127.0.0.1",
        "TAIFA_API_PROJECTION_WAIT_SECONDS": "0",
        "TAIFA_API_LOG_LEVEL": "debug",
    }
    server = ServiceProcess(
        "taifa-api", [venv_bin("taifa-api"), "serve"], tmp_path, env=env, ready_url=f"http://127.0.0.1:{port}/readyz"
    )
    pool = await database.create_pool(api_db, min_size=1, max_size=4)
    try:
        await asyncio.to_thread(server.start)
        writer = asyncio.create_task(_keep_writing(pool))
        await wait_published(api_db, await max_position(api_db) + 5)
        server.kill()  # SIGKILL mid-stream: progress may lag what Kafka already has
        await asyncio.sleep(0.2)
        await asyncio.to_thread(server.start)
        await asyncio.sleep(0.5)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        password, api_key = await _create_over_http(pool, port)
        last = await max_position(api_db)
        await wait_published(api_db, last)
        messages = await consume_all(broker.bootstrap, last)
    finally:
        server.stop()
        await pool.close()
    positions = {decode(m.value).position for m in messages}
    assert positions == set(range(1, last + 1)), "a committed event never reached Kafka"
    log = server.log_path.read_text()
    assert "outbox publisher is the active publisher" in log
    assert "POST /v1/smtp/credentials" in log  # the access log was captured (debug level)
    payloads = b"".join(m.value for m in messages).decode()
    for secret in (password, api_key):
        assert secret not in log and secret not in payloads


async def _create_over_http(pool: asyncpg.Pool, port: int) -> tuple[str, str]:
    """A credential created through the real server; returns the password and the API key used."""
    import httpx

    issued = (await use_cases.create_account(unit_of_work_factory(pool), "http", "pro", "test")).value
    headers = {"Authorization": f"Bearer {issued.api_key}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
        domain = (await client.post("/v1/domains", json={"name": f"{uuid.uuid4().hex[:8]}.example"})).json()
        await use_cases.force_verify_domain(unit_of_work_factory(pool), uuid.UUID(domain["id"]), "test")
        created = await client.post("/v1/smtp/credentials", json={"domain_id": domain["id"]})
        assert created.status_code == 201, created.text
        return created.json()["password"], issued.api_key


async def _keep_writing(pool: asyncpg.Pool) -> None:
    while True:
        await some_events(pool, tenants=1)


async def test_app_runs_the_publisher_in_process(make_settings, broker) -> None:
    async with running_api(make_settings(api_publisher_enabled=True, kafka_bootstrap=broker.bootstrap)) as api:
        tenant = await api.tenant()
        await api.domain(tenant)
        await wait_published(api.settings.database_url, await max_position(api.settings.database_url))


async def test_writes_succeed_while_the_broker_is_down_and_are_published_when_it_comes_up(
    make_settings, tmp_path, postgres_server
) -> None:
    # A database of its own: every event of this test goes to the late broker, none to the module's.
    database_url = await asyncio.to_thread(create_database, postgres_server.url)
    await asyncio.to_thread(migrate.upgrade, database_url)
    port = free_port()
    late_broker = Tansu(tmp_path / "late-tansu", port=port)
    settings = make_settings(
        database_url=database_url,
        api_publisher_enabled=True,
        kafka_bootstrap=f"127.0.0.1:{port}",
        api_publisher_retry_seconds=0.2,
    )
    try:
        async with running_api(settings) as api:
            tenant = await api.tenant()
            domain = await api.verified_domain(tenant)
            assert (await api.credential(tenant, domain["id"])).status_code == 201  # no dual write: Kafka not needed
            await asyncio.to_thread(late_broker.start)
            await create_topics(late_broker.bootstrap, TOPIC_PARTITIONS)
            last = await max_position(api.settings.database_url)
            await wait_published(api.settings.database_url, last, timeout=40)
            messages = await consume_all(late_broker.bootstrap, last)
            assert {decode(m.value).position for m in messages} == set(range(1, last + 1))
    finally:
        await asyncio.to_thread(late_broker.stop)


async def test_a_broker_that_comes_back_empty_gets_the_whole_log_again(make_settings, postgres_server) -> None:
    database_url = await asyncio.to_thread(create_database, postgres_server.url)
    await asyncio.to_thread(migrate.upgrade, database_url)
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="taifa-api-tansu-"))
    first = Tansu(workdir / "first", port=port)
    await asyncio.to_thread(first.start)
    await create_topics(first.bootstrap, TOPIC_PARTITIONS)
    replacement = Tansu(workdir / "second", port=port)
    pool = await database.create_pool(database_url, min_size=1, max_size=4)
    publisher = OutboxPublisher(
        database_url, first.bootstrap, keyring=signing_keyring(), idle_poll_seconds=30, log_check_seconds=0.5
    )
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        await some_events(pool, tenants=2)
        await wait_published(database_url, await max_position(database_url))
        await asyncio.to_thread(first.stop)  # in-memory broker: everything it held is gone
        await asyncio.to_thread(replacement.start)
        await create_topics(replacement.bootstrap, TOPIC_PARTITIONS)
        await some_events(pool, tenants=1)
        last = await max_position(database_url)
        messages = await consume_all(replacement.bootstrap, last, timeout=40)
        assert {decode(m.value).position for m in messages} >= set(range(1, last + 1))
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await pool.close()
        await asyncio.to_thread(replacement.stop)
        await asyncio.to_thread(first.stop)
        shutil.rmtree(workdir, ignore_errors=True)


async def test_a_log_whose_last_batch_holds_several_records_is_not_taken_for_a_lost_one(broker) -> None:
    # tansu (the broker of `make dev` and the tests) ends a log one past its last batch's first record, Kafka one
    # past its last record: compared with the highest acknowledged offset, a round of several records to one
    # partition looked lost at every check, and the publisher replayed the whole event store every 30 s.
    watch = BrokerLogWatch({"bootstrap_servers": broker.bootstrap})
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        for _ in range(2):  # two rounds, each of several records to one partition
            sent = [await producer.send(topics.DOMAINS, b"x", partition=0) for _ in range(6)]
            watch.record(await asyncio.gather(*sent))
            assert not await watch.log_lost(expect_messages=True)
    finally:
        await producer.stop()
    beyond = RecordMetadata(topics.DOMAINS, 0, TopicPartition(topics.DOMAINS, 0), 10**9, -1, 0, -1)
    watch.record([beyond])
    assert await watch.log_lost(expect_messages=True)  # a log that ends below what was acknowledged: lost


async def test_a_wiped_log_is_seen_lost_although_a_new_round_was_written_to_it(tmp_path) -> None:
    # The bound per partition is never lowered: the first round on a wiped (or re-created) log starts near 0, and
    # taking it as the bound hid the loss of the thirty events acknowledged before.
    port = free_port()
    first, replacement = Tansu(tmp_path / "first", port=port), Tansu(tmp_path / "second", port=port)

    async def one_round(count: int) -> list[RecordMetadata]:
        producer = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{port}", acks="all", linger_ms=0)
        await producer.start()
        try:
            return list(
                await asyncio.gather(*[await producer.send(topics.DOMAINS, b"x", partition=0) for _ in range(count)])
            )
        finally:
            await producer.stop()

    await asyncio.to_thread(first.start)
    try:
        await create_topics(first.bootstrap, TOPIC_PARTITIONS)
        watch = BrokerLogWatch({"bootstrap_servers": first.bootstrap})
        for _ in range(5):
            watch.record(await one_round(6))
        assert not await watch.log_lost(expect_messages=True)
    finally:
        await asyncio.to_thread(first.stop)
    await asyncio.to_thread(replacement.start)  # the broker comes back empty
    try:
        await create_topics(replacement.bootstrap, TOPIC_PARTITIONS)
        watch.record(await one_round(1))  # the publisher's next round
        assert await watch.log_lost(expect_messages=True)
    finally:
        await asyncio.to_thread(replacement.stop)


async def test_a_log_lost_while_no_publisher_ran_is_noticed_by_the_next_one(postgres_server, tmp_path) -> None:
    # The bounds the broker's logs are judged by are kept with the progress: in memory only, a restarted publisher
    # started without them, and a broker back empty with another topic already written to (so not empty as a
    # whole) was taken as healthy; the events it had lost were never sent again.
    database_url = await asyncio.to_thread(create_database, postgres_server.url)
    await asyncio.to_thread(migrate.upgrade, database_url)
    port = free_port()
    first, replacement = Tansu(tmp_path / "first", port=port), Tansu(tmp_path / "second", port=port)
    pool = await database.create_pool(database_url, min_size=1, max_size=4)
    await asyncio.to_thread(first.start)
    try:
        await create_topics(first.bootstrap, TOPIC_PARTITIONS)
        async with publishing(database_url, first.bootstrap):
            await some_events(pool, tenants=2)
            last = await max_position(database_url)
            await wait_published(database_url, last)
    finally:
        await asyncio.to_thread(first.stop)  # in-memory broker: everything it held is gone
    await asyncio.to_thread(replacement.start)
    try:
        await create_topics(replacement.bootstrap, TOPIC_PARTITIONS)
        producer = AIOKafkaProducer(bootstrap_servers=replacement.bootstrap, acks="all", linger_ms=0)
        await producer.start()
        try:
            await producer.send_and_wait(topics.ACCOUNTS, b"written by someone else meanwhile", partition=0)
        finally:
            await producer.stop()
        async with publishing(database_url, replacement.bootstrap):  # a new publisher: nothing in its memory
            messages = await consume_all(replacement.bootstrap, last + 1, timeout=20)  # with the stranger's
        assert {decode(m.value).position for m in messages if m.value.startswith(b"{")} >= set(range(1, last + 1))
    finally:
        await pool.close()
        await asyncio.to_thread(replacement.stop)

"""Fixtures of the credential API's integration tests: a fresh database per module on the session PostgreSQL,
a Redis and (where needed) a broker and the real projector per module, and the app running in-process
(lifespan included) behind httpx."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import asyncpg
import pytest
from api_support import ApiHarness, create_database, running_api, venv_bin
from taifa_api.adapters import database, migrate
from taifa_api.settings import Settings
from taifa_localstack import TOPIC_PARTITIONS, Redis, ServiceProcess, Tansu, create_topics, free_port, run_once


@pytest.fixture(scope="module")
def api_db(postgres_server) -> str:
    """A new database with the API's migrations applied."""
    url = create_database(postgres_server.url)
    migrate.upgrade(url)
    # The read-model tables the GET routes read belong to the projector: its own migration makes them.
    run_once([venv_bin("taifa-projector"), "migrate"], env={"TAIFA_DATABASE_URL": url})
    return url


@pytest.fixture(scope="module")
def api_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis of the module's own: the projector's cache epoch and keys never meet another suite's."""
    server = Redis(tmp_path_factory.mktemp("api-redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def make_settings(api_db: str, api_redis: str) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": api_db,
            "redis_url": api_redis,
            "kafka_bootstrap": "127.0.0.1:1",
            "api_publisher_enabled": False,
            "api_projection_wait_seconds": 0.05,
            "api_db_pool_min": 1,
            "api_db_pool_max": 30,
            "api_jwt_secret": "test-hs256-secret-that-is-long-enough-0123456789",
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
async def db_pool(api_db: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the module's database with the API's codecs (jsonb as Python objects)."""
    pool = await database.create_pool(api_db, min_size=1, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def api(make_settings: Callable[..., Settings]) -> AsyncIterator[ApiHarness]:
    async with running_api(make_settings()) as harness:
        yield harness


@pytest.fixture
async def live(
    make_settings: Callable[..., Settings], broker: Tansu, projector: ServiceProcess
) -> AsyncIterator[ApiHarness]:
    """The API publishing to the module's broker, with the real projector behind it: the whole write path, the
    answers waiting for the projection as in production."""
    settings = make_settings(
        api_publisher_enabled=True, kafka_bootstrap=broker.bootstrap, api_projection_wait_seconds=15
    )
    async with running_api(settings) as harness:
        yield harness


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tansu]:
    """A broker of the module's own: what is published there is exactly this module's events."""
    tansu = Tansu(tmp_path_factory.mktemp("api-tansu"))
    tansu.start()
    try:
        asyncio.run(create_topics(tansu.bootstrap, TOPIC_PARTITIONS))
        yield tansu
    finally:
        tansu.stop()


@pytest.fixture(scope="module")
def projector(
    api_db: str, api_redis: str, broker: Tansu, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """The real projector (`taifa-projector run`) on this module's database, Redis index and broker."""
    port = free_port()
    process = ServiceProcess(
        "taifa-projector",
        [venv_bin("taifa-projector"), "run"],
        tmp_path_factory.mktemp("projector"),
        env={
            "TAIFA_DATABASE_URL": api_db,
            "TAIFA_REDIS_URL": api_redis,
            "TAIFA_KAFKA_BOOTSTRAP": broker.bootstrap,
            "TAIFA_PROJECTOR_HEALTH_PORT": str(port),
            "TAIFA_PROJECTOR_GROUP_ID": f"api-tests-{uuid.uuid4().hex[:8]}",
        },
        ready_url=f"http://127.0.0.1:{port}/readyz",
    )
    process.start(timeout=60)
    try:
        yield process
    finally:
        process.stop()

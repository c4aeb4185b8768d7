"""Fixtures for the projector against real PostgreSQL, Redis and the broker.

Each test gets its own database (migrated with `taifa-projector migrate`), its own Redis database
index (flushed), its own topics and consumer group: no test sees another's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from taifa_events import topics
from taifa_localstack import Redis, create_topics, run_once
from taifa_projector.settings import Settings

_redis_db = itertools.count(1)
REDIS_DATABASES = 16


@dataclass
class Isolated:
    """One test's names: database URL, Redis URL, topic names (real name -> test name), group."""

    database_url: str
    redis_url: str
    bootstrap: str
    topic_names: dict[str, str]
    group_id: str

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": self.database_url,
            "redis_url": self.redis_url,
            "kafka_bootstrap": self.bootstrap,
            "projector_group_id": self.group_id,
            "projector_topics": list(self.topic_names.values()),
            "projector_session_timeout_ms": 2000,
            "projector_cache_check_seconds": 0.2,
            "projector_retry_initial_seconds": 0.05,
            "projector_retry_max_seconds": 0.5,
            "projector_poll_timeout_ms": 100,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            "TAIFA_DATABASE_URL": self.database_url,
            "TAIFA_REDIS_URL": self.redis_url,
            "TAIFA_KAFKA_BOOTSTRAP": self.bootstrap,
            "TAIFA_PROJECTOR_GROUP_ID": self.group_id,
            "TAIFA_PROJECTOR_TOPICS": ",".join(self.topic_names.values()),
        }
        env.update(overrides)
        return env


PROJECTOR_BIN = str(Path(sys.executable).with_name("taifa-projector"))


def migrate(database_url: str) -> None:
    run_once([PROJECTOR_BIN, "migrate"], env={"TAIFA_DATABASE_URL": database_url})


async def new_database(server_url: str, template: str | None = None) -> str:
    name = f"projector_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    finally:
        await conn.close()
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def migrated_template(postgres_server) -> str:
    """A database migrated once with `taifa-projector migrate`; each test's database is a copy of it."""
    url = asyncio.run(new_database(postgres_server.url))
    migrate(url)
    return url.rsplit("/", 1)[1]


async def new_topics(bootstrap: str, partitions: int = 3) -> dict[str, str]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    names = {real: f"{prefix}.{real}" for real in topics.ALL_TOPICS}
    await create_topics(
        bootstrap,
        {**{n: partitions for n in names.values()}, **{topics.dead_letter_topic(n): 1 for n in names.values()}},
    )
    return names


@contextlib.asynccontextmanager
async def own_redis(
    tmp_path: Path, postgres_server: Any, kafka_broker: Any, template: str, *, partitions: int = 3
) -> AsyncIterator[tuple[Redis, Isolated]]:
    """A test's stores with a Redis of its own, to restart, fill or stop (the session's is shared): started
    here, stopped at the end."""
    redis = Redis(tmp_path / "redis")
    await asyncio.to_thread(redis.start)
    try:
        yield redis, Isolated(
            await new_database(postgres_server.url, template), redis.url, kafka_broker.bootstrap,
            await new_topics(kafka_broker.bootstrap, partitions), f"g{uuid.uuid4().hex[:8]}",
        )  # fmt: skip
    finally:
        await asyncio.to_thread(redis.stop)


def redis_url_for(server_url: str) -> str:
    index = next(_redis_db) % REDIS_DATABASES
    return server_url.rsplit("/", 1)[0] + f"/{index}"


@pytest.fixture
async def isolated(postgres_server, redis_server, kafka_broker, migrated_template) -> AsyncIterator[Isolated]:
    database_url = await new_database(postgres_server.url, migrated_template)
    redis_url = redis_url_for(redis_server.url)
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    await client.aclose()
    names = await new_topics(kafka_broker.bootstrap)
    yield Isolated(database_url, redis_url, kafka_broker.bootstrap, names, f"g{uuid.uuid4().hex[:8]}")

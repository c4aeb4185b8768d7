"""Helpers for the projector's integration tests: produce envelopes, run a projector, read the read side."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from taifa_events import Envelope, auth_cache, encode
from taifa_events.signing import Keyring
from taifa_localstack import run_once
from taifa_projector.adapters.postgres import PostgresReadModelStore
from taifa_projector.adapters.redis_cache import RedisAuthCacheWriter
from taifa_projector.application.checksum import read_side_checksums
from taifa_projector.entrypoints.consume_loop import Projector
from taifa_projector.settings import Settings

from tests.event_signing import signing_keyring


async def produce(
    bootstrap: str,
    topic_names: dict[str, str],
    events: Sequence[Envelope[Any]],
    *,
    raw: Sequence[tuple[str, bytes, bytes]] = (),
    keyring: Keyring | None = None,
    unsigned: bool = False,
) -> None:
    """Send encoded envelopes to the test's topics (key = Envelope.key), then raw (topic, key, value) records.

    Each record is signed as the API's publisher signs, with `keyring`'s active key (default: the session's
    key, which the projectors under test accept); `unsigned=True` sends them without a signature.
    """
    signer = keyring or signing_keyring()

    def signature(value: bytes) -> list[tuple[str, bytes]]:
        return [] if unsigned else signer.headers(value)

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for event in events:
            value = encode(event)
            headers = [("event_type", event.event_type.encode()), ("event_id", str(event.event_id).encode())]
            futures.append(
                await producer.send(topic_names[event.topic], value, key=event.key, headers=headers + signature(value))
            )
        for topic, key, value in raw:
            futures.append(await producer.send(topic_names[topic], value, key=key, headers=signature(value)))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll `check` until it holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if await check():
                return
        except Exception as exc:  # noqa: BLE001 - a store may be restarting; keep polling
            last = exc
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout}s (last error: {last!r})")


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    """A sample of this process's Prometheus registry (in-process projectors count there), 0 if never counted."""
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def holds(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """A synchronous condition (e.g. on an in-process projector's counters) in the form `eventually` polls."""

    async def run() -> bool:
        return bool(check())

    return run


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Projector]:
    """A projector consuming in this event loop until the block ends."""
    projector = Projector(settings, health=False)
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
    if task.done() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


class ReadSide:
    """Direct access to one test's read models and cache."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __aenter__(self) -> ReadSide:
        self.pool = await asyncpg.create_pool(self.settings.database_url, min_size=1, max_size=2)
        self.redis = aioredis.Redis.from_url(self.settings.redis_url)
        self.store = PostgresReadModelStore(self.pool, self.settings.projector_group_id)
        self.cache = RedisAuthCacheWriter(self.redis, self.settings.projector_group_id)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.redis.aclose()
        await self.pool.close()

    async def count(self, table: str, where: str = "true") -> int:
        return int(await self.pool.fetchval(f"SELECT count(*) FROM {table} WHERE {where}"))  # noqa: S608

    async def credential(self, credential_id: Any) -> asyncpg.Record | None:
        return await self.pool.fetchrow("SELECT * FROM rm_smtp_credentials WHERE credential_id = $1", credential_id)

    async def entry(self, username: str) -> auth_cache.AuthCacheEntry | None:
        return auth_cache.AuthCacheEntry.from_redis(await self.redis.hgetall(auth_cache.auth_key(username)))

    async def checksums(self) -> dict[str, str]:
        return await read_side_checksums(self.store, self.cache)

    async def offsets_total(self) -> int:
        """Records committed to PostgreSQL (the batch's Redis write may still be on its way)."""
        return sum((await self.store.load_offsets()).values())

    async def committed(self, total: int) -> bool:
        """At least `total` records committed to the read model (whatever the auth cache has)."""
        return await self.offsets_total() >= total

    async def consumed(self, total: int) -> bool:
        """At least `total` records applied to the read model *and* the auth cache.

        A batch's Redis write follows its PostgreSQL commit and may overlap the next batch's transaction, so a
        test that reads Redis after waiting on `offsets_total` alone races the write; the cache's own offsets
        (raised in the same Redis transaction as the batch's entries) say when it has landed."""
        committed = await self.store.load_offsets()
        cached = await self.cache.offsets()
        return sum(min(offset, cached.get(tp, 0)) for tp, offset in committed.items()) >= total


def rebuild(isolated: Any, source: str) -> dict[str, Any]:
    """Run `taifa-projector rebuild --from SOURCE` for a test's stores; its last output line is a JSON summary."""
    from tests.integration.projector.conftest import PROJECTOR_BIN

    out = run_once([PROJECTOR_BIN, "rebuild", "--from", source], env=isolated.env(), timeout=300)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result

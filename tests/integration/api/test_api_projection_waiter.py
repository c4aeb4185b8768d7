"""The read-your-writes wait (adapters.projection_waiter) on a real Redis, built as bootstrap builds it: every wait
ends at its bound when no projector signals the event (the response then says `X-Taifa-Projection: pending`)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import pytest
from taifa_api.adapters.projection_waiter import RedisProjectionWaiter
from taifa_api.bootstrap import REDIS_TIMEOUT_SECONDS
from taifa_events import auth_cache
from taifa_runtime.redis import redis_client


@pytest.fixture
async def waiter(api_redis: str) -> AsyncIterator[RedisProjectionWaiter]:
    """The waiter as bootstrap builds it, subscribed."""
    client = redis_client(api_redis, timeout=REDIS_TIMEOUT_SECONDS)
    waiter = RedisProjectionWaiter(client)
    stop = asyncio.Event()
    runner = asyncio.create_task(waiter.run(stop))
    try:
        await asyncio.wait_for(waiter._subscribed.wait(), 10)
        yield waiter
    finally:
        stop.set()
        await runner
        await client.aclose()


async def test_a_wait_ends_at_its_bound_even_when_the_bound_falls_during_a_redis_command(waiter) -> None:
    """Bounds of a few milliseconds fall while the wait's own Redis command is in flight; redis-py's `wait_for`
    (Python 3.11) could swallow the timeout's one cancellation there, and the wait then hung until a signal came.
    Each of 200 waits must be over within a second of its bound."""
    bounds = random.Random(1)

    async def one(within: float) -> bool | None:
        try:
            return await asyncio.wait_for(waiter.wait_applied(uuid.uuid4(), within), within + 1.0)
        except TimeoutError:
            return None  # still waiting a second past its bound

    for _ in range(10):
        results = await asyncio.gather(*(one(bounds.uniform(0.0002, 0.004)) for _ in range(20)))
        assert results == [False] * 20


async def test_a_signal_within_the_bound_ends_the_wait_with_true(waiter, api_redis: str) -> None:
    event_id = uuid.uuid4()
    waiting = asyncio.create_task(waiter.wait_applied(event_id, 5.0))
    await asyncio.sleep(0)  # registered before the signal
    publisher = redis_client(api_redis, timeout=REDIS_TIMEOUT_SECONDS)
    try:
        await publisher.publish(auth_cache.APPLIED_CHANNEL, str(event_id))
    finally:
        await publisher.aclose()
    assert await asyncio.wait_for(waiting, 5.5) is True


async def test_no_wait_leaves_its_waiter_behind(waiter, api_redis: str) -> None:
    """Whichever way a wait ends (the signal already in its key, the bound, a signal): the waiter is forgotten, or
    every later resubscription would check them all again."""
    applied = uuid.uuid4()
    publisher = redis_client(api_redis, timeout=REDIS_TIMEOUT_SECONDS)
    try:
        await publisher.set(auth_cache.applied_key(str(applied)), "1", ex=60)
    finally:
        await publisher.aclose()
    assert await waiter.wait_applied(applied, 2.0) is True  # found in its key
    assert await waiter.wait_applied(uuid.uuid4(), 0.05) is False  # the bound
    assert waiter._waiters == {}

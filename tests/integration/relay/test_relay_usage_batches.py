"""The relay's usage batches on a real Redis (adapters.usage_buffer): each batch is applied once, in order, whatever
happens to the MULTI that carried it. A MULTI whose answer comes after the relay's timeout (Redis applied it) is
sent again and must not count twice; one cancelled mid-flight must not stop the counting."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest
import redis.asyncio as aioredis
from taifa_events import usage
from taifa_relay.adapters.usage_buffer import UsageBuffer

from tests.integration.relay.support import until

# Keeps Redis busy (as a slow fork, an fsync or a failover pause would) for ARGV[1] milliseconds.
BUSY = """
local t = redis.call('TIME')
local until_us = t[1] * 1000000 + t[2] + ARGV[1] * 1000
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= until_us
return 1
"""


async def _messages(client: aioredis.Redis, credential: uuid.UUID, now: float) -> int:
    return int(await client.hget(usage.usage_key(credential, usage.window_start(now)), usage.FIELD_MESSAGES) or 0)


@pytest.fixture
async def other(relay_redis_url: str):  # type: ignore[no-untyped-def]
    client = aioredis.Redis.from_url(relay_redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def buffer(relay_redis_url: str):  # type: ignore[no-untyped-def]
    """A relay process's usage buffer, with the relay's own 2 s Redis timeout; closed (flushed) at the end."""
    buffer = UsageBuffer(relay_redis_url)
    yield buffer
    await buffer.close()


async def test_a_batch_redis_applied_after_the_timeout_is_not_counted_again(relay_redis_url: str, other) -> None:
    credential, account, secret = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    buffer = UsageBuffer(relay_redis_url, timeout=0.3)
    try:
        await buffer._redis.ping()  # the pooled connection open, as on a busy relay
        now = time.time()
        buffer.delivered(str(credential), str(account), str(secret), "192.0.2.1", 2, 100, now)
        busy = asyncio.create_task(other.eval(BUSY, 0, 1000))
        await asyncio.sleep(0.1)  # Redis is in the busy script: the flush's answer comes after its timeout
        await buffer.flush()
        assert await busy == 1
        # Redis applied it late (usually), or never read it before the relay closed the connection.
        assert await _messages(other, credential, now) in (0, 1)
        buffer.delivered(str(credential), str(account), str(secret), "192.0.2.1", 1, 100, now)
        # The unconfirmed batch again (skipped), then the new one. A try may meet the pooled connection the timeout
        # left behind (a ConnectionError: both stay unconfirmed), as the relay's next drain would: until all is sent.
        for _ in range(10):
            await buffer.flush()
            if buffer.idle():
                break
        assert buffer.idle()
        assert await _messages(other, credential, now) == 2
        key = usage.usage_key(credential, usage.window_start(now))
        assert await other.hget(key, usage.FIELD_RECIPIENTS) == b"3"
        assert await other.zscore(usage.USAGE_PENDING_KEY, usage.pending_member(credential, usage.window_start(now)))
    finally:
        await buffer.close()


async def test_a_batch_applied_whose_answer_was_lost_is_skipped_when_sent_again(buffer: UsageBuffer, other) -> None:
    credential, account, secret = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = time.time()
    buffer.delivered(str(credential), str(account), str(secret), "192.0.2.1", 1, 10, now)
    async with buffer._redis.pipeline(transaction=True) as pipe:
        taken = buffer.drain_into(pipe, force=True)
        await pipe.execute()  # applied...
    buffer.restore(taken)  # ...but the relay never saw the answer
    buffer.delivered(str(credential), str(account), str(secret), "192.0.2.1", 1, 10, now)
    await buffer.flush()
    await buffer.flush()
    assert await _messages(other, credential, now) == 2


async def test_a_batch_that_never_reached_redis_is_applied_by_the_next_drain(buffer: UsageBuffer, other) -> None:
    credential, account = uuid.uuid4(), uuid.uuid4()
    now = time.time()
    buffer.refused(str(credential), str(account), "policy", now)
    async with buffer._redis.pipeline(transaction=True) as pipe:
        taken = buffer.drain_into(pipe, force=True)
    assert taken is not None
    buffer.restore(taken)  # as after a refused connection: nothing was sent
    buffer.refused(str(credential), str(account), "policy", now)
    await buffer.flush()
    key = usage.usage_key(credential, usage.window_start(now))
    assert await other.hget(key, usage.refused_field("policy")) == b"2"


async def test_a_drain_in_flight_holds_the_next_one_so_batches_arrive_in_order(buffer: UsageBuffer, other) -> None:
    credential, account = uuid.uuid4(), uuid.uuid4()
    now = time.time()
    buffer.refused(str(credential), str(account), "limits", now)
    redis = buffer._redis
    async with redis.pipeline(transaction=True) as first, redis.pipeline(transaction=True) as second:
        taken = buffer.drain_into(first, force=True)
        buffer.refused(str(credential), str(account), "limits", now)
        assert not buffer.due() and buffer.drain_into(second, force=True) is None  # held until the first answers
        buffer.confirm(taken, await first.execute())
    await buffer.flush()
    key = usage.usage_key(credential, usage.window_start(now))
    assert await other.hget(key, usage.refused_field("limits")) == b"2"


async def test_a_flush_cancelled_mid_flight_does_not_stop_the_counting(buffer: UsageBuffer, other) -> None:
    credential, account, secret = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await buffer._redis.ping()
    now = time.time()
    buffer.delivered(str(credential), str(account), str(secret), "192.0.2.1", 1, 10, now)
    await other.ping()  # its connection open: the busy script goes out at once
    busy = asyncio.create_task(other.eval(BUSY, 0, 300))
    await asyncio.sleep(0)  # the busy script sent first
    flush = asyncio.create_task(buffer.flush())
    await until(lambda: buffer._in_flight, 2.0, "the flush in flight")
    flush.cancel()
    with contextlib.suppress(asyncio.CancelledError):  # (on a very slow machine it may have answered already)
        await flush
    await busy
    assert not buffer._in_flight  # nothing stuck: the cancelled drain's batches wait for the next one
    await buffer.flush()
    assert buffer.idle()
    assert await _messages(other, credential, now) == 1


async def test_a_hash_gets_a_generation_when_a_batch_creates_it_and_a_new_one_after_redis_lost_it(
    buffer: UsageBuffer, other
) -> None:
    credential, account, old_relays = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = time.time()
    key = usage.usage_key(credential, usage.window_start(now))
    buffer.refused(str(credential), str(account), "policy", now)
    await buffer.flush()
    first = await other.hget(key, usage.FIELD_GENERATION)
    assert first
    buffer.refused(str(credential), str(account), "policy", now)
    await buffer.flush()
    assert await other.hget(key, usage.FIELD_GENERATION) == first  # set once
    await other.delete(key)  # Redis lost it
    buffer.refused(str(credential), str(account), "policy", now)
    await buffer.flush()
    second = await other.hget(key, usage.FIELD_GENERATION)
    assert second and second != first
    assert await other.hget(key, usage.refused_field("policy")) == b"1"
    # A hash an older relay made (its account, no generation) stays in the generation "" it was published in.
    legacy = usage.usage_key(old_relays, usage.window_start(now))
    await other.hset(legacy, usage.FIELD_ACCOUNT_ID, str(account))
    buffer.refused(str(old_relays), str(account), "policy", now)
    await buffer.flush()
    assert await other.hget(legacy, usage.FIELD_GENERATION) is None


async def test_a_count_recorded_while_the_timers_flush_is_in_flight_is_flushed_after_it(
    buffer: UsageBuffer, other
) -> None:
    """A quiet relay: only the one-second timer flushes. A count recorded while the timer's flush waits on a slow
    Redis sets a timer that fires during that flush (and does nothing); the flush's answer must look again."""
    credential, account = uuid.uuid4(), uuid.uuid4()
    await buffer._redis.ping()
    now = time.time()
    key = usage.usage_key(credential, usage.window_start(now))
    busy = asyncio.create_task(other.eval(BUSY, 0, 2600))  # slow until +2.6 s: the flush at +1 s answers then
    buffer.refused(str(credential), str(account), "policy", now)  # the timer's flush at +1 s
    await until(lambda: buffer._in_flight, 3.0, "the timer's flush in flight")
    buffer.refused(str(credential), str(account), "policy", now)  # its timer fires at +2 s, during the flush
    await busy

    async def both_counted() -> bool:
        return await other.hget(key, usage.refused_field("policy")) == b"2"

    await until(both_counted, 5.0, "both counts in Redis")

"""Quota notices in Redis as several projector instances flush them (real Redis): each instance reads the oldest
notices, publishes them, then removes what it read. Two instances that read the same notices while the relays
push new ones must leave every notice they did not read in the list (a removal counted from the end would drop
notices nobody published: `smtp_credential.quota_reached` audit entries and their webhooks lost)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
from taifa_events import usage
from taifa_events.usage import QuotaNotice
from taifa_projector.adapters.usage_redis import RedisUsageCounters

from tests.integration.projector.conftest import redis_url_for


def _notice(account: int) -> bytes:
    return QuotaNotice(
        account_id=uuid.UUID(int=account), credential_id=uuid.uuid4(), day="20261128", percent=80, count=160,
        quota=200, at=datetime.now(UTC),
    ).model_dump_json().encode()  # fmt: skip


@pytest.fixture
async def client(redis_server) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url_for(redis_server.url))
    await client.flushdb()
    yield client
    await client.aclose()


async def _push(client: aioredis.Redis, notices: list[bytes]) -> None:
    for notice in notices:
        await client.lpush(usage.QUOTA_NOTICES_KEY, notice)  # as the relays do


async def test_two_instances_reading_the_same_notices_remove_only_those(client) -> None:
    first, second = RedisUsageCounters(client), RedisUsageCounters(client)
    old = [_notice(i) for i in range(1, 4)]
    await _push(client, old)
    read_by_first = await first.quota_notices(500)
    read_by_second = await second.quota_notices(500)
    assert read_by_first == read_by_second == old  # oldest first
    new = [_notice(i) for i in range(4, 6)]  # two more accounts cross 80 % while both publish
    await _push(client, new)
    await first.drop_quota_notices(read_by_first)
    await second.drop_quota_notices(read_by_second)
    assert await first.quota_notices(500) == new


async def test_a_flush_of_the_oldest_part_leaves_the_rest(client) -> None:
    """More notices than one flush takes: the two instances both take the oldest three and remove only them."""
    first, second = RedisUsageCounters(client), RedisUsageCounters(client)
    notices = [_notice(i) for i in range(1, 6)]
    await _push(client, notices)
    read_by_first, read_by_second = await first.quota_notices(3), await second.quota_notices(3)
    await first.drop_quota_notices(read_by_first)
    await second.drop_quota_notices(read_by_second)
    assert await first.quota_notices(500) == notices[3:]

"""A batch's Redis transaction announces its revocations, then its "credential changed" notices, then the
applied event ids, in that order (issue 18: the notices go out from one script call instead of one PUBLISH each;
real Redis). Pub/sub channels are shared by every database of the server, so only this test's messages count."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis
from taifa_events import auth_cache
from taifa_projector.adapters.redis_cache import RedisAuthCacheWriter


async def test_revocations_then_changes_then_applied_ids_in_order_from_one_batch(isolated) -> None:
    client = aioredis.Redis.from_url(isolated.redis_url)
    listener = aioredis.Redis.from_url(isolated.redis_url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(auth_cache.REVOCATIONS_CHANNEL, auth_cache.APPLIED_CHANNEL)
    tag = uuid.uuid4().hex[:12]
    revoked = [(f"r{i}-{tag}@example.com", uuid.uuid4()) for i in range(3)]
    changed = [(f"c{i}-{tag}@example.com", uuid.uuid4()) for i in range(2)]
    applied = [uuid.uuid4() for _ in range(4)]
    expected = [(auth_cache.REVOCATIONS_CHANNEL, auth_cache.revocation_message(u, c)) for u, c in revoked]
    expected += [(auth_cache.REVOCATIONS_CHANNEL, auth_cache.change_message(u, c)) for u, c in changed]
    expected += [(auth_cache.APPLIED_CHANNEL, str(i)) for i in applied]
    mine = {text for _, text in expected}
    try:
        writer = RedisAuthCacheWriter(client, isolated.group_id)
        await writer.write_batch([], {}, applied, revoked, changes=changed)
        heard: list[tuple[str, str]] = []
        async with asyncio.timeout(10):
            while len(heard) < len(expected):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message["data"].decode() in mine:
                    heard.append((message["channel"].decode(), message["data"].decode()))
        assert heard == expected
        # Nothing published twice.
        extra = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        assert extra is None or extra["data"].decode() not in mine
    finally:
        await pubsub.aclose()
        await listener.aclose()
        await client.aclose()

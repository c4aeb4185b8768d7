"""With the REAL projector (`taifa-projector run` as a subprocess) and the in-process publisher:
read-your-writes on POST/DELETE, the GET routes on the read models, BOLA on them, and no secret anywhere
(captured logs, event store, Kafka payloads, list responses, Redis)."""

from __future__ import annotations

import json
import logging
import uuid

import redis.asyncio as aioredis
from api_support import consume_all
from taifa_events import auth_cache, hash_secret


async def test_created_domain_is_readable_at_once(live) -> None:
    tenant = await live.tenant()
    response = await live.client.post(
        "/v1/domains", json={"name": f"ryw{uuid.uuid4().hex[:6]}.example"}, headers=tenant.headers
    )
    assert response.status_code == 201
    assert response.headers["X-Taifa-Projection"] == "applied"
    domain = response.json()
    got = await live.client.get(f"/v1/domains/{domain['id']}", headers=tenant.headers)
    assert got.status_code == 200 and got.json() == domain
    listed = (await live.client.get("/v1/domains", headers=tenant.headers)).json()
    assert [d["id"] for d in listed] == [domain["id"]]


async def test_credential_is_usable_and_listed_when_201_returns_and_refused_when_204_returns(live) -> None:
    tenant = await live.tenant()
    domain = await live.verified_domain(tenant)
    response = await live.credential(tenant, domain["id"])
    assert response.status_code == 201 and response.headers["X-Taifa-Projection"] == "applied"
    created = response.json()
    cache = aioredis.Redis.from_url(live.settings.redis_url, decode_responses=True)
    try:
        entry = auth_cache.AuthCacheEntry.from_redis(await cache.hgetall(auth_cache.auth_key(created["username"])))
        assert entry is not None and entry.active
        assert entry.secret_hash == hash_secret(created["password"])
        listed = (await live.client.get("/v1/smtp/credentials", headers=tenant.headers)).json()
        expected = {k: v for k, v in created.items() if k != "password"} | {"deactivated_at": None}
        assert listed == [expected]

        deleted = await live.client.delete(f"/v1/smtp/credentials/{created['id']}", headers=tenant.headers)
        assert deleted.status_code == 204 and deleted.headers["X-Taifa-Projection"] == "applied"
        entry = auth_cache.AuthCacheEntry.from_redis(await cache.hgetall(auth_cache.auth_key(created["username"])))
        assert entry is None or not entry.active
        after = (await live.client.get("/v1/smtp/credentials", headers=tenant.headers)).json()
        assert after[0]["is_active"] is False and after[0]["deactivated_at"].endswith("Z")
    finally:
        await cache.aclose()


async def test_lists_are_newest_first_and_only_this_accounts(live) -> None:
    alice, bob = await live.tenant(), await live.tenant()
    ids = []
    for _ in range(3):
        domain = await live.verified_domain(alice)
        ids.append((await live.credential(alice, domain["id"])).json()["id"])
    bob_domain = await live.verified_domain(bob)
    await live.credential(bob, bob_domain["id"])
    listed = (await live.client.get("/v1/smtp/credentials", headers=alice.headers)).json()
    assert [c["id"] for c in listed] == ids[::-1]
    # BOLA on the read side: Bob's domain is a 404 identical to an unknown id.
    foreign = await live.client.get(f"/v1/domains/{bob_domain['id']}", headers=alice.headers)
    unknown = await live.client.get(f"/v1/domains/{uuid.uuid4()}", headers=alice.headers)
    assert foreign.status_code == unknown.status_code == 404 and foreign.content == unknown.content
    assert bob_domain["id"] not in json.dumps((await live.client.get("/v1/domains", headers=alice.headers)).json())


async def test_no_secret_in_logs_event_store_kafka_responses_or_redis(live, broker, projector, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    tenant = await live.tenant()
    domain = await live.verified_domain(tenant)
    created = (await live.credential(tenant, domain["id"])).json()
    password, api_key = created["password"], tenant.api_key
    await live.client.get("/v1/smtp/credentials", headers=tenant.headers)
    await live.client.delete(f"/v1/smtp/credentials/{created['id']}", headers=tenant.headers)

    responses = [
        (await live.client.get(path, headers=tenant.headers)).text
        for path in ("/v1/smtp/credentials", "/v1/domains", f"/v1/domains/{domain['id']}", "/metrics")
    ]
    events = json.dumps([dict(r) for r in await live.pool.fetch("SELECT * FROM event_store")], default=str)
    tables = json.dumps([dict(r) for r in await live.pool.fetch("SELECT * FROM rm_smtp_credentials")], default=str)
    total = int(await live.pool.fetchval("SELECT max(position) FROM event_store"))
    kafka = b"".join((m.value or b"") + (m.key or b"") for m in await consume_all(broker.bootstrap, total))
    cache = aioredis.Redis.from_url(live.settings.redis_url, decode_responses=True)
    try:
        redis_dump = json.dumps(
            [await cache.hgetall(k) async for k in cache.scan_iter("taifa:auth:*") if await cache.type(k) == "hash"]
        )
    finally:
        await cache.aclose()
    logs = caplog.text + projector.log_path.read_text(errors="replace")

    for where, text in {
        "responses": "".join(responses),
        "event store": events,
        "read model": tables,
        "kafka": kafka.decode(errors="replace"),
        "redis": redis_dump,
        "logs": logs,
    }.items():
        assert password not in text, where
        assert api_key not in text, where
    assert hash_secret(password) in events and hash_secret(password) in kafka.decode()

"""`DELETE /v1/domains/{id}` (contract v2) with the REAL projector: the domain is released, its credentials are
deactivated in the same transaction and refused from the 204 on, and another account may verify the name."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis
from api_support import event_rows, running_api
from taifa_api.application import use_cases
from taifa_api.domain.errors import DomainAlreadyReleased
from taifa_events import auth_cache


async def _cache_entry(api, username: str) -> auth_cache.AuthCacheEntry | None:
    cache = aioredis.Redis.from_url(api.settings.redis_url, decode_responses=True)
    try:
        return auth_cache.AuthCacheEntry.from_redis(await cache.hgetall(auth_cache.auth_key(username)))
    finally:
        await cache.aclose()


async def test_deleting_a_domain_deactivates_its_credentials_at_once_and_frees_the_name(live) -> None:
    alice, bob = await live.tenant(), await live.tenant()
    domain = await live.verified_domain(alice)
    first = (await live.credential(alice, domain["id"])).json()
    assert (await live.client.delete(f"/v1/smtp/credentials/{first['id']}", headers=alice.headers)).status_code == 204
    created = await live.credential(alice, domain["id"])
    assert created.headers["X-Taifa-Projection"] == "applied"
    credential = created.json()
    entry = await _cache_entry(live, credential["username"])
    assert entry is not None and entry.active

    deleted = await live.client.delete(f"/v1/domains/{domain['id']}", headers=alice.headers)
    assert deleted.status_code == 204 and deleted.content == b""
    assert deleted.headers["X-Taifa-Projection"] == "applied"
    # From the 204 on: the relay's cache refuses the credential, and the domain is gone for the account.
    entry = await _cache_entry(live, credential["username"])
    assert entry is None or not entry.active
    assert (await live.client.get(f"/v1/domains/{domain['id']}", headers=alice.headers)).status_code == 404
    assert domain["id"] not in {d["id"] for d in (await live.client.get("/v1/domains", headers=alice.headers)).json()}
    listed = {c["id"]: c for c in (await live.client.get("/v1/smtp/credentials", headers=alice.headers)).json()}
    assert listed[credential["id"]]["is_active"] is False and listed[credential["id"]]["deactivated_at"]
    assert listed[first["id"]]["is_active"] is False

    # One transaction: consecutive positions, one correlation id; the already deactivated credential gets nothing.
    rows = [r for r in await event_rows(live.settings.database_url) if r["data"].get("domain_id") == domain["id"]]
    tail = rows[-2:]
    assert [r["event_type"] for r in tail] == ["CredentialDeactivated", "DomainReleased"]
    assert tail[0]["data"]["credential_id"] == credential["id"]
    assert tail[1]["data"]["reason"] == "owner" and tail[1]["data"]["name"] == domain["name"]
    assert tail[1]["position"] == tail[0]["position"] + 1
    assert tail[0]["correlation_id"] == tail[1]["correlation_id"]

    # The name is free: another account verifies it; a credential for the released id is a 404.
    bobs = await live.verified_domain(bob, domain["name"])
    status = await live.pool.fetchval("SELECT status FROM domains WHERE domain_id = $1", uuid.UUID(bobs["id"]))
    assert status == "verified"
    assert (await live.credential(alice, domain["id"])).status_code == 404


async def test_deleting_a_released_domain_again_is_404_and_appends_nothing(live) -> None:
    tenant = await live.tenant()
    domain = await live.verified_domain(tenant)
    assert (await live.client.delete(f"/v1/domains/{domain['id']}", headers=tenant.headers)).status_code == 204
    before = len(await event_rows(live.settings.database_url))
    again = await live.client.delete(f"/v1/domains/{domain['id']}", headers=tenant.headers)
    unknown = await live.client.delete(f"/v1/domains/{uuid.uuid4()}", headers=tenant.headers)
    assert again.status_code == unknown.status_code == 404 and again.content == unknown.content
    assert (await live.client.post(f"/v1/domains/{domain['id']}/verify", headers=tenant.headers)).status_code == 404
    assert len(await event_rows(live.settings.database_url)) == before


async def test_a_released_name_can_be_registered_again_by_the_same_account(live) -> None:
    tenant = await live.tenant()
    domain = await live.domain(tenant)
    assert (await live.client.delete(f"/v1/domains/{domain['id']}", headers=tenant.headers)).status_code == 204
    again = await live.client.post("/v1/domains", json={"name": domain["name"]}, headers=tenant.headers)
    assert again.status_code == 201 and again.json()["id"] != domain["id"]
    assert [d["id"] for d in (await live.client.get("/v1/domains", headers=tenant.headers)).json()] == [
        again.json()["id"]
    ]


async def test_the_domain_cap_counts_live_domains_only(make_settings) -> None:
    async with running_api(make_settings(api_max_domains_per_account=2)) as api:
        tenant = await api.tenant()
        first = await api.domain(tenant)
        await api.domain(tenant)
        refused = await api.client.post("/v1/domains", json={"name": "three.example"}, headers=tenant.headers)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "domain_limit_reached"
        # A name the account already holds is still answered (200), at the cap too.
        assert (
            await api.client.post("/v1/domains", json={"name": first["name"]}, headers=tenant.headers)
        ).status_code == 200
        assert (await api.client.delete(f"/v1/domains/{first['id']}", headers=tenant.headers)).status_code == 204
        assert (
            await api.client.post("/v1/domains", json={"name": "three.example"}, headers=tenant.headers)
        ).status_code == 201


async def test_operator_force_verify_of_a_released_domain_is_refused(api) -> None:
    tenant = await api.tenant()
    domain = await api.domain(tenant)
    await use_cases.release_domain(api.uow, uuid.UUID(domain["id"]), tenant.account_id, "owner", "test")
    with pytest.raises(DomainAlreadyReleased):
        await use_cases.force_verify_domain(api.uow, uuid.UUID(domain["id"]), "test")

"""Invariants under concurrent requests, served by two app instances ("pods") on one database."""

from __future__ import annotations

import asyncio
import uuid

from api_support import running_api


async def test_twenty_parallel_creates_for_one_domain_give_one_201_and_nineteen_409(make_settings) -> None:
    async with running_api(make_settings()) as pod_a, running_api(make_settings()) as pod_b:
        tenant = await pod_a.tenant(plan="enterprise")
        domain = await pod_a.verified_domain(tenant)
        responses = await asyncio.gather(
            *[(pod_a if i % 2 else pod_b).credential(tenant, domain["id"]) for i in range(20)]
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [409] * 19, statuses
        assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {"credential_exists"}
        active = await pod_a.pool.fetchval(
            "SELECT count(*) FROM credentials WHERE domain_id = $1 AND is_active", uuid.UUID(domain["id"])
        )
        events = await pod_a.pool.fetchval(
            "SELECT count(*) FROM event_store WHERE event_type = 'CredentialCreated' AND data->>'domain_id' = $1",
            domain["id"],
        )
        assert (active, events) == (1, 1)


async def test_plan_limit_plus_five_parallel_creates_give_exactly_the_limit(make_settings) -> None:
    limit = 5  # the starter plan's default
    async with running_api(make_settings()) as pod_a, running_api(make_settings()) as pod_b:
        tenant = await pod_a.tenant(plan="starter")
        domains = [await pod_a.verified_domain(tenant) for _ in range(limit + 5)]
        responses = await asyncio.gather(
            *[(pod_a if i % 2 else pod_b).credential(tenant, d["id"]) for i, d in enumerate(domains)]
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] * limit + [403] * 5, statuses
        assert {r.json()["error"]["code"] for r in responses if r.status_code == 403} == {"credential_limit_reached"}
        active = await pod_a.pool.fetchval(
            "SELECT count(*) FROM credentials WHERE account_id = $1 AND is_active", tenant.account_id
        )
        assert active == limit


async def test_parallel_deletes_of_one_credential_append_one_event(api) -> None:
    tenant = await api.tenant()
    domain = await api.verified_domain(tenant)
    created = (await api.credential(tenant, domain["id"])).json()
    responses = await asyncio.gather(
        *[api.client.delete(f"/v1/smtp/credentials/{created['id']}", headers=tenant.headers) for _ in range(10)]
    )
    assert [r.status_code for r in responses] == [204] * 10
    events = await api.pool.fetchval(
        "SELECT count(*) FROM event_store WHERE event_type = 'CredentialDeactivated' AND stream_id = $1",
        uuid.UUID(created["id"]),
    )
    assert events == 1


async def test_parallel_appends_keep_positions_gap_free(make_settings) -> None:
    async with running_api(make_settings()) as pod_a, running_api(make_settings()) as pod_b:
        tenants = [await pod_a.tenant() for _ in range(3)]
        await asyncio.gather(
            *[
                (pod_a if i % 2 else pod_b).client.post(
                    "/v1/domains", json={"name": f"p{i}-{uuid.uuid4().hex[:6]}.example"}, headers=t.headers
                )
                for i, t in enumerate(tenants * 10)
            ]
        )
        positions = [r["position"] for r in await pod_a.pool.fetch("SELECT position FROM event_store ORDER BY 1")]
        assert positions == list(range(1, len(positions) + 1))


async def test_parallel_registrations_never_exceed_the_domain_cap(make_settings) -> None:
    cap = 4
    settings = make_settings(api_max_domains_per_account=cap)
    async with running_api(settings) as pod_a, running_api(settings) as pod_b:
        tenant = await pod_a.tenant()
        responses = await asyncio.gather(
            *[
                (pod_a if i % 2 else pod_b).client.post(
                    "/v1/domains", json={"name": f"cap{i}-{uuid.uuid4().hex[:6]}.example"}, headers=tenant.headers
                )
                for i in range(cap + 8)
            ]
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] * cap + [403] * 8, statuses
        assert {r.json()["error"]["code"] for r in responses if r.status_code == 403} == {"domain_limit_reached"}
        held = await pod_a.pool.fetchval("SELECT count(*) FROM domains WHERE account_id = $1", tenant.account_id)
        events = await pod_a.pool.fetchval(
            "SELECT count(*) FROM event_store WHERE event_type = 'DomainRegistered' AND data->>'account_id' = $1",
            str(tenant.account_id),
        )
        assert (held, events) == (cap, cap)


async def test_parallel_deletes_of_one_domain_release_it_once(api) -> None:
    tenant = await api.tenant()
    domain = await api.verified_domain(tenant)
    assert (await api.credential(tenant, domain["id"])).status_code == 201
    responses = await asyncio.gather(
        *[api.client.delete(f"/v1/domains/{domain['id']}", headers=tenant.headers) for _ in range(10)]
    )
    assert sorted(r.status_code for r in responses) == [204] + [404] * 9
    counts = await api.pool.fetchrow(
        "SELECT count(*) FILTER (WHERE event_type = 'DomainReleased') AS released, "
        "count(*) FILTER (WHERE event_type = 'CredentialDeactivated') AS deactivated "
        "FROM event_store WHERE data->>'domain_id' = $1",
        domain["id"],
    )
    assert (counts["released"], counts["deactivated"]) == (1, 1)


async def test_restricting_creating_and_releasing_at_once_never_deadlock_into_a_500(api) -> None:
    """PATCH a credential's limits, POST a second credential for its domain and DELETE the domain, all at once: each
    answers as the contract says (PATCH 200 or 409 once deactivated, POST 409 or 404, DELETE 204). The PATCH used to
    lock the account after the credential, the opposite order of the other two, and PostgreSQL broke the deadlock
    by failing one of them with a 500 (about 1 round in 4)."""
    allowed = {"PATCH": {200, 404, 409}, "POST": {404, 409}, "DELETE": {204}}
    for _ in range(20):
        tenant = await api.tenant()
        domain = await api.verified_domain(tenant)
        credential = (await api.credential(tenant, domain["id"])).json()
        patch, post, delete = await asyncio.gather(
            api.client.patch(
                f"/v1/smtp/credentials/{credential['id']}",
                json={"limits": {"messages_per_minute": 5}},
                headers=tenant.headers,
            ),
            api.client.post("/v1/smtp/credentials", json={"domain_id": domain["id"]}, headers=tenant.headers),
            api.client.delete(f"/v1/domains/{domain['id']}", headers=tenant.headers),
        )
        codes = {"PATCH": patch.status_code, "POST": post.status_code, "DELETE": delete.status_code}
        assert all(codes[name] in allowed[name] for name in codes), codes

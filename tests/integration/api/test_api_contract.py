"""The REST API of docs/api.md through the real app on real PostgreSQL and Redis: happy paths and every error row."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from api_support import assert_error, event_rows, running_api
from taifa_api import metrics
from taifa_api.application import use_cases
from taifa_api.domain import api_keys
from taifa_events.secrets import SMTP_PASSWORD_PATTERN

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


# --- happy paths ---------------------------------------------------------------------------------------------


async def test_register_domain_returns_pending_with_txt_verification(api) -> None:
    tenant = await api.tenant()
    response = await api.client.post("/v1/domains", json={"name": "Bücher.Example"}, headers=tenant.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "xn--bcher-kva.example"
    assert body["status"] == "pending"
    assert body["verification"]["type"] == "TXT"
    assert body["verification"]["name"] == "_taifa.xn--bcher-kva.example"
    assert body["verification"]["value"].startswith("taifa-verification=")
    assert RFC3339_UTC.match(body["created_at"])
    uuid.UUID(body["id"])


async def test_unicode_full_stops_separate_labels_as_idna_maps_them(api) -> None:
    # The request schema required an ASCII dot before the IDNA mapping ran: 422 where the console said 201.
    tenant = await api.tenant()
    names = {}
    for raw in ("bücher\u3002example", "例え\uff0eテスト", "dots.example\uff61"):
        response = await api.client.post("/v1/domains", json={"name": raw}, headers=tenant.headers)
        names[raw] = (response.status_code, response.json().get("name"))
    assert list(names.values()) == [
        (201, "xn--bcher-kva.example"),
        (201, "xn--r8jz45g.xn--zckzah"),
        (201, "dots.example"),
    ]


async def test_registering_the_same_name_again_returns_the_existing_domain(api) -> None:
    tenant = await api.tenant()
    first = await api.domain(tenant, "again.example")
    second = await api.client.post("/v1/domains", json={"name": "AGAIN.example."}, headers=tenant.headers)
    assert second.status_code == 200
    assert second.json()["id"] == first["id"]


async def test_create_credential_returns_201_with_password_and_smtp_settings(api) -> None:
    tenant = await api.tenant()
    domain = await api.verified_domain(tenant)
    response = await api.credential(tenant, domain["id"])
    assert response.status_code == 201, response.text
    body = response.json()
    seed = {"id", "domain_id", "domain", "username", "password", "is_active", "created_at", "smtp"}
    lifecycle = {"status", "suspended_at", "suspension_reason", "expires_at", "allowed_cidrs", "limits", "secrets"}
    assert set(body) == seed | lifecycle | {"last_used_at", "last_used_ip"}
    assert body["domain_id"] == domain["id"] and body["domain"] == domain["name"]
    assert body["username"] == f"{str(tenant.account_id)[:8]}@{domain['name']}"
    assert re.fullmatch(SMTP_PASSWORD_PATTERN, body["password"])
    assert (body["status"], body["allowed_cidrs"], body["expires_at"], body["suspended_at"]) == (
        "active",
        [],
        None,
        None,
    )
    assert body["limits"] == {"messages_per_minute": None, "messages_per_day": None}
    (secret,) = body["secrets"]
    assert secret == {"id": secret["id"], "created_at": body["created_at"], "expires_at": None, "last_used_at": None}
    assert body["is_active"] is True
    assert RFC3339_UTC.match(body["created_at"])
    assert body["smtp"] == {"host": "mail.govconnect.ke", "port": 587, "encryption": "STARTTLS"}
    # No projector in this module: the wait times out and says so.
    assert response.headers["X-Taifa-Projection"] == "pending"
    # The password is in the body: no cache may keep it (as every /v1 response, refusals included).
    assert response.headers["Cache-Control"] == "no-store"
    refused = await api.client.get("/v1/smtp/credentials", headers={"Authorization": "Bearer tm_nope"})
    assert (refused.status_code, refused.headers["Cache-Control"]) == (401, "no-store")
    assert "Cache-Control" not in (await api.client.get("/healthz")).headers


async def test_delete_credential_is_204_then_204_again_without_a_new_event(api) -> None:
    tenant = await api.tenant()
    domain = await api.verified_domain(tenant)
    created = (await api.credential(tenant, domain["id"])).json()
    first = await api.client.delete(f"/v1/smtp/credentials/{created['id']}", headers=tenant.headers)
    assert first.status_code == 204 and first.content == b""
    before = len(await event_rows(api.settings.database_url))
    second = await api.client.delete(f"/v1/smtp/credentials/{created['id']}", headers=tenant.headers)
    assert second.status_code == 204 and second.content == b""
    assert len(await event_rows(api.settings.database_url)) == before
    # No projector in this module: the repeat answers for the first DELETE's state, which no cache holds yet.
    assert first.headers["X-Taifa-Projection"] == second.headers["X-Taifa-Projection"] == "pending"
    # The domain is free again: a new credential may be created.
    assert (await api.credential(tenant, domain["id"])).status_code == 201


async def test_events_are_appended_with_commit_ordered_gap_free_positions(api) -> None:
    tenant = await api.tenant()
    domain = await api.verified_domain(tenant)
    created = (await api.credential(tenant, domain["id"])).json()
    await api.client.delete(f"/v1/smtp/credentials/{created['id']}", headers=tenant.headers)
    rows = await event_rows(api.settings.database_url)
    assert [row["position"] for row in rows] == list(range(1, len(rows) + 1))
    mine = [row for row in rows if row["data"].get("credential_id") == created["id"]]
    assert [row["event_type"] for row in mine] == ["CredentialCreated", "CredentialDeactivated"]
    assert [row["stream_version"] for row in mine] == [1, 2]
    assert all(row["partition_key"] == domain["id"] and row["topic"] == "taifa.smtp-credentials" for row in mine)


# --- error rows ----------------------------------------------------------------------------------------------


async def test_credential_for_unverified_domain_is_400_domain_not_verified(api) -> None:
    tenant = await api.tenant()
    domain = await api.domain(tenant)
    assert_error(await api.credential(tenant, domain["id"]), 400, "domain_not_verified")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-key",
        "Bearer tm_" + "a" * 49,  # right shape, wrong checksum
    ],
)
async def test_missing_or_malformed_authentication_is_401_with_one_body(api, authorization) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    responses = [
        await api.client.get("/v1/smtp/credentials", headers=headers),
        await api.client.post("/v1/domains", json={"name": "x.example"}, headers=headers),
        await api.client.post("/v1/smtp/credentials", content=b"{not json", headers=headers),
        await api.client.delete(f"/v1/smtp/credentials/{uuid.uuid4()}", headers=headers),
    ]
    bodies = {r.content for r in responses}
    assert all(r.status_code == 401 for r in responses)
    assert bodies == {b'{"error":{"code":"unauthorized","message":"Missing or invalid authentication."}}'}


async def test_bad_checksum_key_is_refused_before_any_lookup(api) -> None:
    tenant = await api.tenant()
    body = tenant.api_key[3 : 3 + api_keys.RANDOM_LENGTH]
    wrong = api_keys.PREFIX + body + ("000000" if api_keys.checksum(body) != "000000" else "000001")
    before = metrics.API_KEY_LOOKUPS._value.get()
    response = await api.client.get("/v1/domains", headers={"Authorization": f"Bearer {wrong}"})
    assert_error(response, 401, "unauthorized")
    assert metrics.API_KEY_LOOKUPS._value.get() == before
    # A well-formed unknown key is looked up, and refused with the same body.
    unknown = api_keys.generate_api_key()
    other = await api.client.get("/v1/domains", headers={"Authorization": f"Bearer {unknown}"})
    assert metrics.API_KEY_LOOKUPS._value.get() == before + 1
    assert other.content == response.content


async def test_revoked_api_key_is_401_from_then_on(api) -> None:
    tenant = await api.tenant()
    assert (await api.client.post("/v1/domains", json={"name": "r.example"}, headers=tenant.headers)).status_code == 201
    await use_cases.revoke_api_key(api.uow, tenant.key_id, "test")
    assert_error(await api.client.get("/v1/domains", headers=tenant.headers), 401, "unauthorized")
    assert_error(
        await api.client.post("/v1/domains", json={"name": "r2.example"}, headers=tenant.headers), 401, "unauthorized"
    )


async def test_plan_limit_is_403_credential_limit_reached(api) -> None:
    tenant = await api.tenant(plan="free")
    first = await api.verified_domain(tenant)
    second = await api.verified_domain(tenant)
    assert (await api.credential(tenant, first["id"])).status_code == 201
    assert_error(await api.credential(tenant, second["id"]), 403, "credential_limit_reached")


async def test_second_active_credential_for_domain_is_409(api) -> None:
    tenant = await api.tenant()
    domain = await api.verified_domain(tenant)
    assert (await api.credential(tenant, domain["id"])).status_code == 201
    assert_error(await api.credential(tenant, domain["id"]), 409, "credential_exists")


async def test_unknown_ids_are_404(api) -> None:
    tenant = await api.tenant()
    unknown = uuid.uuid4()
    assert_error(await api.credential(tenant, str(unknown)), 404, "not_found")
    assert_error(await api.client.delete(f"/v1/smtp/credentials/{unknown}", headers=tenant.headers), 404, "not_found")
    assert_error(await api.client.post(f"/v1/domains/{unknown}/verify", headers=tenant.headers), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "content"),
    [
        ("POST", "/v1/smtp/credentials", b"{not json"),
        ("POST", "/v1/smtp/credentials", b'{"domain_id": "not-a-uuid"}'),
        ("POST", "/v1/smtp/credentials", b"{}"),
        ("POST", "/v1/smtp/credentials", b"[]"),
        ("POST", "/v1/smtp/credentials", b'{"domain_id": 12}'),
        ("POST", "/v1/domains", b'{"name": "not a domain"}'),
        ("POST", "/v1/domains", b'{"name": 5}'),
        ("POST", "/v1/domains", b'{"name": "\\u0000.example"}'),
        ("POST", "/v1/domains", b"\xff\xfe"),
        ("DELETE", "/v1/smtp/credentials/not-a-uuid", b""),
        ("GET", "/v1/domains/123", b""),
        ("POST", "/v1/domains/zzz/verify", b""),
        ("DELETE", "/v1/domains/not-a-uuid", b""),
    ],
)
async def test_malformed_body_uuid_or_json_is_422_validation_error(api, method, path, content) -> None:
    tenant = await api.tenant()
    headers = {**tenant.headers, "Content-Type": "application/json"}
    assert_error(await api.client.request(method, path, content=content, headers=headers), 422, "validation_error")


@pytest.mark.parametrize(
    "extra",
    [
        {"account_id": str(uuid.uuid4())},
        {"tenant_id": "x"},
        {"plan": "enterprise"},
        {"is_admin": True},
        {"secret_hash": "0" * 64},
        {"password": "mine"},
        {"created_at": "2020-01-01T00:00:00Z"},
        {"is_active": False},
    ],
)
async def test_mass_assignment_is_refused_with_422_and_changes_nothing(api, extra) -> None:
    tenant = await api.tenant()
    domain = await api.verified_domain(tenant)
    before = len(await event_rows(api.settings.database_url))
    response = await api.client.post(
        "/v1/smtp/credentials", json={"domain_id": domain["id"], **extra}, headers=tenant.headers
    )
    assert_error(response, 422, "validation_error")
    domain_response = await api.client.post(
        "/v1/domains",
        json={"name": f"m{uuid.uuid4().hex[:6]}.example", "verified": True, **extra},
        headers=tenant.headers,
    )
    assert_error(domain_response, 422, "validation_error")
    assert len(await event_rows(api.settings.database_url)) == before
    plan = await api.pool.fetchval("SELECT plan FROM accounts WHERE account_id = $1", tenant.account_id)
    assert plan == "pro"


async def test_rate_limit_is_429_with_retry_after(make_settings) -> None:
    async with running_api(make_settings(api_rate_limit_requests=5, api_rate_limit_window_seconds=60)) as api:
        tenant = await api.tenant()
        other = await api.tenant()
        statuses = [
            (await api.client.get("/v1/domains/" + str(uuid.uuid4()), headers=tenant.headers)) for _ in range(8)
        ]
        assert [r.status_code for r in statuses[:5]] == [404] * 5
        limited = statuses[5:]
        for response in limited:
            assert_error(response, 429, "rate_limited")
            assert 1 <= int(response.headers["Retry-After"]) <= 61
        # Per key: another account is not affected.
        assert (await api.client.get(f"/v1/domains/{uuid.uuid4()}", headers=other.headers)).status_code == 404


# --- BOLA ----------------------------------------------------------------------------------------------------


async def test_another_accounts_ids_give_a_404_identical_to_an_unknown_id_and_change_nothing(api) -> None:
    alice, bob = await api.tenant(), await api.tenant()
    bob_domain = await api.verified_domain(bob)
    bob_pending = await api.domain(bob)
    bob_credential = (await api.credential(bob, bob_domain["id"])).json()
    before = await event_rows(api.settings.database_url)
    unknown = str(uuid.uuid4())

    def same(foreign, random) -> None:
        assert foreign.status_code == random.status_code == 404
        assert foreign.content == random.content
        drop = {"date", "content-length", "x-request-id"}  # a new request id per request
        assert {k: v for k, v in foreign.headers.items() if k not in drop} == {
            k: v for k, v in random.headers.items() if k not in drop
        }

    c = api.client
    same(
        await c.get(f"/v1/domains/{bob_domain['id']}", headers=alice.headers),
        await c.get(f"/v1/domains/{unknown}", headers=alice.headers),
    )
    same(
        await c.post(f"/v1/domains/{bob_pending['id']}/verify", headers=alice.headers),
        await c.post(f"/v1/domains/{unknown}/verify", headers=alice.headers),
    )
    same(
        await c.delete(f"/v1/smtp/credentials/{bob_credential['id']}", headers=alice.headers),
        await c.delete(f"/v1/smtp/credentials/{unknown}", headers=alice.headers),
    )
    same(await api.credential(alice, bob_domain["id"]), await api.credential(alice, unknown))
    # The credential lifecycle's paths and verbs (docs/api.md, "Credential lifecycle").
    bob_secret = bob_credential["secrets"][0]["id"]
    for method, suffix, body in (
        ("GET", "", None),
        ("GET", "/usage", None),
        ("PATCH", "", {"allowed_cidrs": ["10.0.0.0/8"]}),
        ("POST", "/rotate", None),
        ("POST", "/rotate", {"grace_period_seconds": 0}),
        ("POST", "/suspend", {"reason": "x"}),
        ("POST", "/resume", None),
        ("DELETE", f"/secrets/{bob_secret}", None),
    ):
        same(
            await c.request(
                method, f"/v1/smtp/credentials/{bob_credential['id']}{suffix}", json=body, headers=alice.headers
            ),
            await c.request(method, f"/v1/smtp/credentials/{unknown}{suffix}", json=body, headers=alice.headers),
        )
    same(
        await c.delete(f"/v1/domains/{bob_domain['id']}", headers=alice.headers),
        await c.delete(f"/v1/domains/{unknown}", headers=alice.headers),
    )
    assert await event_rows(api.settings.database_url) == before
    active = await api.pool.fetchval(
        "SELECT is_active FROM credentials WHERE credential_id = $1", uuid.UUID(bob_credential["id"])
    )
    assert active is True
    state = await api.pool.fetchrow(
        "SELECT status, allowed_cidrs, (SELECT count(*) FROM credential_secrets s "
        "WHERE s.credential_id = c.credential_id) AS secrets FROM credentials c WHERE credential_id = $1",
        uuid.UUID(bob_credential["id"]),
    )
    assert tuple(state) == ("active", [], 1)
    status = await api.pool.fetchval("SELECT status FROM domains WHERE domain_id = $1", uuid.UUID(bob_domain["id"]))
    assert status == "verified"


# --- secrets -------------------------------------------------------------------------------------------------


async def test_password_and_api_key_never_reach_the_event_store_or_tables(api) -> None:
    tenant = await api.tenant()
    domain = await api.verified_domain(tenant)
    password = (await api.credential(tenant, domain["id"])).json()["password"]
    dump = json.dumps([dict(r) for r in await event_rows(api.settings.database_url)], default=str)
    tables = json.dumps(
        [dict(r) for r in await api.pool.fetch("SELECT * FROM credentials")]
        + [dict(r) for r in await api.pool.fetch("SELECT * FROM api_keys")],
        default=str,
    )
    for secret in (password, tenant.api_key):
        assert secret not in dump and secret not in tables
    from taifa_events import hash_secret

    assert hash_secret(password) in dump  # only the hash travels

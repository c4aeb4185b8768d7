"""Webhook endpoints (docs/api.md, "Webhooks") through the real app on PostgreSQL and Redis: the secret shown once
and stored encrypted, rotation, deletion, the delivery history, SSRF refusals at creation (production and dev
settings), events, the per-account cap, BOLA, CSRF with cookie authentication, mass assignment."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import jwt
import pytest
from api_support import event_rows, running_api
from taifa_api.adapters.webhook_secrets import WebhookSecretBox, generate_key_ring_entry

JWT_SECRET = "test-hs256-secret-that-is-long-enough-0123456789"  # make_settings' api_jwt_secret
KEYS = generate_key_ring_entry("test-1")
PUBLIC_URL = "https://93.184.215.14/taifa/hook"  # a public address literal: nothing to resolve


@pytest.fixture
async def hooks(make_settings):
    """Production rules: https only, no loopback."""
    async with running_api(make_settings(webhook_secret_keys=KEYS)) as api:
        yield api


@pytest.fixture
async def dev_hooks(make_settings):
    async with running_api(make_settings(webhook_secret_keys=KEYS, webhook_allow_http=True)) as api:
        yield api


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    return error


async def _create(api, tenant, url: str = PUBLIC_URL, events: list[str] | None = None) -> dict:
    response = await api.client.post(
        "/v1/webhooks", json={"url": url, "events": events or ["*"]}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def _stored(api, webhook_id: str) -> asyncpg.Record:
    return await api.pool.fetchrow("SELECT * FROM webhook_endpoints WHERE id = $1", uuid.UUID(webhook_id))


async def test_create_shows_the_secret_once_and_stores_it_encrypted(hooks) -> None:
    tenant = await hooks.tenant()
    created = await _create(hooks, tenant, events=["smtp_credential.deactivated", "domain.verified"])
    assert created["secret"].startswith("whsec_") and len(created["secret"]) == len("whsec_") + 44
    assert created["url"] == PUBLIC_URL
    assert (created["status"], created["events"]) == ("enabled", ["smtp_credential.deactivated", "domain.verified"])
    assert created["created_at"].endswith("Z") and created["previous_secret_expires_at"] is None

    listed = await hooks.client.get("/v1/webhooks", headers=tenant.headers)
    one = await hooks.client.get(f"/v1/webhooks/{created['id']}", headers=tenant.headers)
    assert listed.status_code == one.status_code == 200
    assert [item["id"] for item in listed.json()] == [created["id"]]
    for body in (listed.json()[0], one.json()):
        assert "secret" not in body and created["secret"] not in str(body)
        assert body == {k: v for k, v in created.items() if k != "secret"}

    row = await _stored(hooks, created["id"])
    assert created["secret"].encode() not in row["secret_ciphertext"]
    box = WebhookSecretBox.parse(KEYS)
    assert box.decrypt(row["secret_ciphertext"], row["id"]) == created["secret"]
    assert row["previous_secret_ciphertext"] is None

    events = [e for e in await event_rows(hooks.settings.database_url) if e["event_type"].startswith("Webhook")]
    assert [e["event_type"] for e in events] == ["WebhookEndpointCreated"]
    assert events[0]["data"]["webhook_id"] == created["id"] and events[0]["data"]["url"] == PUBLIC_URL
    assert created["secret"] not in str(events[0])
    metadata = events[0]["metadata"]
    metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
    assert metadata["actor"] == {"type": "api_key", "id": str(tenant.key_id)}  # the audit feed's actor


async def test_rotation_returns_a_new_secret_and_keeps_the_previous_one_for_24_hours(hooks) -> None:
    tenant = await hooks.tenant()
    created = await _create(hooks, tenant)
    before = datetime.now(UTC)
    rotated = await hooks.client.post(f"/v1/webhooks/{created['id']}/rotate-secret", headers=tenant.headers)
    assert rotated.status_code == 201, rotated.text
    body = rotated.json()
    assert body["secret"].startswith("whsec_") and body["secret"] != created["secret"]
    until = datetime.fromisoformat(body["previous_secret_expires_at"])
    assert before + timedelta(hours=24) <= until <= datetime.now(UTC) + timedelta(hours=24)

    row = await _stored(hooks, created["id"])
    box = WebhookSecretBox.parse(KEYS)
    assert box.decrypt(row["secret_ciphertext"], row["id"]) == body["secret"]
    assert box.decrypt(row["previous_secret_ciphertext"], row["id"]) == created["secret"]
    shown = (await hooks.client.get(f"/v1/webhooks/{created['id']}", headers=tenant.headers)).json()
    assert "secret" not in shown and shown["previous_secret_expires_at"] == body["previous_secret_expires_at"]
    types = [e["event_type"] for e in await event_rows(hooks.settings.database_url) if e["stream_id"] == row["id"]]
    assert types == ["WebhookEndpointCreated", "WebhookSecretRotated"]


async def test_delete_removes_the_endpoint_and_its_deliveries(hooks) -> None:
    tenant = await hooks.tenant()
    created = await _create(hooks, tenant)
    await _add_delivery(hooks, created["id"], tenant.account_id, attempts=1)
    response = await hooks.client.delete(f"/v1/webhooks/{created['id']}", headers=tenant.headers)
    assert response.status_code == 204 and response.content == b""
    _error(await hooks.client.get(f"/v1/webhooks/{created['id']}", headers=tenant.headers), 404, "not_found")
    _error(await hooks.client.delete(f"/v1/webhooks/{created['id']}", headers=tenant.headers), 404, "not_found")
    webhook_id = uuid.UUID(created["id"])
    assert await hooks.pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1", webhook_id) == 0
    assert await hooks.pool.fetchval("SELECT count(*) FROM webhook_attempts") == 0
    types = [e["event_type"] for e in await event_rows(hooks.settings.database_url) if e["stream_id"] == webhook_id]
    assert types == ["WebhookEndpointCreated", "WebhookEndpointDeleted"]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://93.184.215.14/hook", "the URL must use https"),
        ("https://localhost/hook", "the URL resolves to a loopback address"),
        ("https://127.0.0.1/hook", "the URL is a loopback address"),
        ("https://[::1]/hook", "the URL is a loopback address"),
        ("https://10.1.2.3/hook", "the URL is a private address"),
        ("https://192.168.1.10:8443/hook", "the URL is a private address"),
        ("https://[fd12::1]/hook", "the URL is a private address"),
        ("https://169.254.10.1/hook", "the URL is a link-local address"),
        ("https://[fe80::1]/hook", "the URL is a link-local address"),
        ("https://169.254.169.254/latest/meta-data/", "the URL is a cloud metadata address"),
        ("https://[fd00:ec2::254]/", "the URL is a cloud metadata address"),
        ("https://[::ffff:127.0.0.1]/hook", "the URL is a loopback address"),
        ("https://[::ffff:169.254.169.254]/", "the URL is a cloud metadata address"),
        ("https://0.0.0.0/hook", "the URL is an unspecified address"),
        ("https://224.0.0.1/hook", "the URL is a multicast address"),
        ("https://2130706433/hook", "not a valid IPv4 address"),
        ("https://user:pw@example.com/hook", "user information"),
    ],
)
async def test_forbidden_urls_are_422_with_the_reason_under_production_settings(hooks, url: str, why: str) -> None:
    tenant = await hooks.tenant()
    response = await hooks.client.post("/v1/webhooks", json={"url": url, "events": ["*"]}, headers=tenant.headers)
    error = _error(response, 422, "validation_error")
    assert error["message"].startswith("url: ") and why in error["message"]
    assert (
        await hooks.pool.fetchval("SELECT count(*) FROM webhook_endpoints WHERE account_id = $1", tenant.account_id)
        == 0
    )


async def test_dev_settings_allow_http_and_loopback_but_never_metadata_or_link_local(dev_hooks) -> None:
    tenant = await dev_hooks.tenant()
    for url in ("http://localhost:9999/hook", "http://127.0.0.1:9999/hook", "http://[::1]:9999/hook"):
        assert (await _create(dev_hooks, tenant, url=url))["url"] == url
    for url, why in [
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
        ("http://[fd00:ec2::254]/", "a cloud metadata address"),
        ("http://[::ffff:169.254.169.254]/", "a cloud metadata address"),
        ("http://169.254.1.1/", "a link-local address"),
        ("http://[fe80::1]/", "a link-local address"),
        ("http://10.0.0.1/", "a private address"),
        ("ftp://localhost/", "https or http"),
    ]:
        response = await dev_hooks.client.post(
            "/v1/webhooks", json={"url": url, "events": ["*"]}, headers=tenant.headers
        )
        assert why in _error(response, 422, "validation_error")["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"url": PUBLIC_URL, "events": []},
        {"url": PUBLIC_URL, "events": ["no.such_type"]},
        {"url": PUBLIC_URL, "events": ["*", "domain.created"]},
        {"url": PUBLIC_URL},
        {"events": ["*"]},
        {"url": PUBLIC_URL, "events": "*"},
        {"url": PUBLIC_URL, "events": ["*"], "secret": "whsec_mine"},
        {"url": PUBLIC_URL, "events": ["*"], "status": "disabled"},
        {"url": PUBLIC_URL, "events": ["*"], "id": str(uuid.uuid4())},
        {"url": PUBLIC_URL, "events": ["*"], "account_id": str(uuid.uuid4())},
    ],
)
async def test_bad_bodies_and_mass_assignment_are_422_and_create_nothing(hooks, body: dict) -> None:
    tenant = await hooks.tenant()
    _error(await hooks.client.post("/v1/webhooks", json=body, headers=tenant.headers), 422, "validation_error")
    assert (
        await hooks.pool.fetchval("SELECT count(*) FROM webhook_endpoints WHERE account_id = $1", tenant.account_id)
        == 0
    )


async def test_repeated_event_types_are_stored_once(hooks) -> None:
    tenant = await hooks.tenant()
    created = await _create(hooks, tenant, events=["domain.created", "domain.created", "webhook.disabled"])
    assert created["events"] == ["domain.created", "webhook.disabled"]


async def test_the_per_account_cap_is_403_webhook_limit_reached(make_settings) -> None:
    async with running_api(make_settings(webhook_secret_keys=KEYS, webhook_max_endpoints_per_account=2)) as api:
        tenant, other = await api.tenant(), await api.tenant()
        await _create(api, tenant)
        second = await _create(api, tenant)
        response = await api.client.post(
            "/v1/webhooks", json={"url": PUBLIC_URL, "events": ["*"]}, headers=tenant.headers
        )
        _error(response, 403, "webhook_limit_reached")
        await _create(api, other)  # per account
        assert (await api.client.delete(f"/v1/webhooks/{second['id']}", headers=tenant.headers)).status_code == 204
        await _create(api, tenant)


async def test_without_secret_keys_create_and_rotate_are_503_and_reads_work(api) -> None:
    tenant = await api.tenant()
    response = await api.client.post("/v1/webhooks", json={"url": PUBLIC_URL, "events": ["*"]}, headers=tenant.headers)
    _error(response, 503, "unavailable")
    assert (await api.client.get("/v1/webhooks", headers=tenant.headers)).json() == []


async def test_lists_page_like_the_others(hooks) -> None:
    tenant = await hooks.tenant()
    ids = [(await _create(hooks, tenant))["id"] for _ in range(3)]
    first = await hooks.client.get("/v1/webhooks?limit=2", headers=tenant.headers)
    assert [item["id"] for item in first.json()] == ids[::-1][:2]
    link = first.headers["link"]
    assert link.startswith("</v1/webhooks?cursor=") and link.endswith('&limit=2>; rel="next"')
    second = await hooks.client.get(link[1 : link.index(">")], headers=tenant.headers)
    assert [item["id"] for item in second.json()] == [ids[0]] and "link" not in second.headers
    for query in ("limit=0", "limit=1001", "cursor=bogus"):
        _error(await hooks.client.get(f"/v1/webhooks?{query}", headers=tenant.headers), 422, "validation_error")


async def _add_delivery(
    api, webhook_id: str, account_id: uuid.UUID, *, attempts: int, status: str = "pending"
) -> uuid.UUID:
    delivery_id, event_id = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    async with api.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO webhook_deliveries (id, webhook_id, account_id, message_id, event_id, event_type, payload, "
            "status, attempts, next_attempt_at, created_at, last_attempt_at) "
            "VALUES ($1, $2, $3, $4, $5, 'domain.created', $6, $7, $8, $9, $10, $11)",
            delivery_id,
            uuid.UUID(webhook_id),
            account_id,
            f"msg_{uuid.uuid4()}",
            event_id,
            {"type": "domain.created", "timestamp": "2026-11-28T08:00:00Z", "data": {"id": str(event_id)}},
            status,
            attempts,
            now + timedelta(minutes=5),
            now,
            now if attempts else None,
        )
        for attempt in range(1, attempts + 1):
            await conn.execute(
                "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, status_code, latency_ms, error, "
                "response_excerpt) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                delivery_id,
                attempt,
                now - timedelta(minutes=attempts - attempt),
                503 if attempt % 2 else None,
                40 + attempt,
                None if attempt % 2 else "connect timeout",
                "busy" if attempt % 2 else None,
            )
    return delivery_id


async def test_delivery_history_lists_attempts_newest_first_and_pages(hooks) -> None:
    tenant = await hooks.tenant()
    created = await _create(hooks, tenant)
    older = await _add_delivery(hooks, created["id"], tenant.account_id, attempts=12)
    newer = await _add_delivery(hooks, created["id"], tenant.account_id, attempts=0)
    url = f"/v1/webhooks/{created['id']}/deliveries"
    response = await hooks.client.get(url, headers=tenant.headers)
    assert response.status_code == 200, response.text
    first, second = response.json()
    assert (first["id"], second["id"]) == (str(newer), str(older))
    assert first["attempts"] == [] and first["attempt_count"] == 0 and first["next_attempt_at"] is not None
    assert second["attempt_count"] == 12 and second["message_id"].startswith("msg_")
    assert [a["attempt"] for a in second["attempts"]] == list(range(12, 2, -1))  # the newest 10
    last = second["attempts"][0]
    assert (last["status_code"], last["latency_ms"], last["error"], last["response_excerpt"]) == (
        None,
        52,
        "connect timeout",
        None,
    )
    assert second["attempts"][1]["status_code"] == 503 and second["attempts"][1]["response_excerpt"] == "busy"
    assert second["payload"]["type"] == "domain.created"
    paged = await hooks.client.get(f"{url}?limit=1", headers=tenant.headers)
    assert [d["id"] for d in paged.json()] == [str(newer)] and 'rel="next"' in paged.headers["link"]
    nxt = paged.headers["link"]
    rest = await hooks.client.get(nxt[1 : nxt.index(">")], headers=tenant.headers)
    assert [d["id"] for d in rest.json()] == [str(older)]
    _error(
        await hooks.client.get(f"{url}?cursor={nxt.split('cursor=')[1].split('&')[0]}x", headers=tenant.headers),
        422,
        "validation_error",
    )


async def test_another_accounts_webhook_is_the_same_404_as_an_unknown_one(hooks) -> None:
    alice, bob = await hooks.tenant(), await hooks.tenant()
    bobs = await _create(hooks, bob)
    count = len(await event_rows(hooks.settings.database_url))
    c, h = hooks.client, alice.headers
    calls = [
        lambda wid: c.get(f"/v1/webhooks/{wid}", headers=h),
        lambda wid: c.delete(f"/v1/webhooks/{wid}", headers=h),
        lambda wid: c.post(f"/v1/webhooks/{wid}/rotate-secret", headers=h),
        lambda wid: c.get(f"/v1/webhooks/{wid}/deliveries", headers=h),
    ]
    for call in calls:
        foreign, random = await call(bobs["id"]), await call(uuid.uuid4())
        assert foreign.status_code == random.status_code == 404
        assert foreign.content == random.content
        drop = {"date", "content-length", "x-request-id"}
        assert {k: v for k, v in foreign.headers.items() if k not in drop} == {
            k: v for k, v in random.headers.items() if k not in drop
        }
    assert (await c.get("/v1/webhooks", headers=h)).json() == []
    assert len(await event_rows(hooks.settings.database_url)) == count
    row = await _stored(hooks, bobs["id"])
    assert row["previous_secret_ciphertext"] is None and row["status"] == "enabled"


async def test_cookie_authenticated_webhook_changes_need_the_csrf_header(hooks) -> None:
    tenant = await hooks.tenant()
    created = await _create(hooks, tenant)
    token = jwt.encode(
        {"account_id": str(tenant.account_id), "exp": int(datetime.now(UTC).timestamp()) + 600}, JWT_SECRET, "HS256"
    )
    cookies = {"Cookie": f"taifa_session={token}; taifa_csrf=abc"}
    c = hooks.client
    for response in (
        await c.post("/v1/webhooks", json={"url": PUBLIC_URL, "events": ["*"]}, headers=cookies),
        await c.post(f"/v1/webhooks/{created['id']}/rotate-secret", headers=cookies),
        await c.delete(f"/v1/webhooks/{created['id']}", headers=cookies),
        await c.post(f"/v1/webhooks/{created['id']}/rotate-secret", headers={**cookies, "X-CSRF-Token": "abd"}),
    ):
        _error(response, 403, "csrf_failed")
    assert (await c.get("/v1/webhooks", headers=cookies)).status_code == 200
    ok = await c.post(
        "/v1/webhooks", json={"url": PUBLIC_URL, "events": ["*"]}, headers={**cookies, "X-CSRF-Token": "abc"}
    )
    assert ok.status_code == 201 and ok.json()["secret"].startswith("whsec_")
    assert (await _stored(hooks, created["id"]))["previous_secret_ciphertext"] is None


async def test_unauthenticated_webhook_requests_are_401(hooks) -> None:
    for response in (
        await hooks.client.get("/v1/webhooks"),
        await hooks.client.post("/v1/webhooks", json={"url": PUBLIC_URL, "events": ["*"]}),
        await hooks.client.get(f"/v1/webhooks/{uuid.uuid4()}/deliveries", headers={"Authorization": "Bearer tm_nope"}),
    ):
        _error(response, 401, "unauthorized")

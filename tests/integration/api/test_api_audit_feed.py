"""The audit trail of CONTRACT §8 (issue 17) through the real app, PostgreSQL, the broker and the real projector:
`GET /v1/events` and `GET /v1/smtp/credentials/{id}/events` newest first, the actor of each kind of caller (API key,
session, operator via `taifa-admin`, and `unknown` for events without metadata), the source address and request
id, no secret or hash anywhere in the feed, BOLA, cursor pagination and its 422s."""

from __future__ import annotations

import asyncio
import getpass
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from api_support import venv_bin
from taifa_api.domain import paging
from taifa_events import hash_secret
from taifa_localstack import run_once

JWT_SECRET = "test-hs256-secret-that-is-long-enough-0123456789"  # make_settings' api_jwt_secret


def _session(account_id: uuid.UUID, sub: str) -> dict[str, str]:
    token = jwt.encode(
        {"account_id": str(account_id), "sub": sub, "exp": datetime.now(UTC) + timedelta(minutes=10)},
        JWT_SECRET,
        algorithm="HS256",
    )
    return {"Cookie": f"taifa_session={token}; taifa_csrf=c1", "X-CSRF-Token": "c1"}


async def _feed(api, headers: dict[str, str], path: str = "/v1/events", **params: Any) -> dict[str, Any]:
    response = await api.client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _until(api, headers: dict[str, str], count: int, path: str = "/v1/events") -> list[dict[str, Any]]:
    """The feed once it holds `count` entries (the projector applies asynchronously), within a deadline."""
    deadline = time.monotonic() + 30
    while True:
        data = (await _feed(api, headers, path, limit=200))["data"]
        if len(data) >= count or time.monotonic() > deadline:
            assert len(data) == count, [e["type"] for e in data]
            return data
        await asyncio.sleep(0.1)


async def _history(api) -> dict[str, Any]:
    """A credential's life by every kind of caller; what each step showed (to look for in the feed later)."""
    c = api.client
    tenant = await api.tenant()
    domain = await api.verified_domain(tenant)  # the use case without a request context: actor unknown
    created = await c.post("/v1/smtp/credentials", json={"domain_id": domain["id"]}, headers=tenant.headers)
    assert created.status_code == 201, created.text
    credential = created.json()
    session = _session(tenant.account_id, "user-42")
    rotated = await c.post(
        f"/v1/smtp/credentials/{credential['id']}/rotate",
        json={"grace_period_seconds": 0},
        headers={**session, "X-Request-ID": "rotate-req-1"},
    )
    assert rotated.status_code == 201, rotated.text
    assert rotated.headers["X-Request-ID"] == "rotate-req-1"
    env = {"TAIFA_DATABASE_URL": api.settings.database_url}
    run_once([venv_bin("taifa-admin"), "credential", "suspend", credential["id"], "--reason", "abuse"], env=env)
    resumed = await c.post(f"/v1/smtp/credentials/{credential['id']}/resume", headers=tenant.headers)
    assert resumed.status_code == 200, resumed.text
    deleted = await c.delete(f"/v1/smtp/credentials/{credential['id']}", headers=tenant.headers)
    assert deleted.status_code == 204, deleted.text
    return {
        "tenant": tenant, "domain": domain, "credential": credential, "session": session,
        "passwords": [credential["password"], rotated.json()["password"]],
    }  # fmt: skip


@pytest.fixture
async def history(live) -> dict[str, Any]:
    return await _history(live)


async def test_feed_is_newest_first_with_each_actor_and_no_secret(live, history) -> None:
    tenant, credential = history["tenant"], history["credential"]
    events = await _until(live, tenant.headers, 7)
    assert [e["type"] for e in events] == [
        "smtp_credential.deactivated", "smtp_credential.resumed", "smtp_credential.suspended",
        "smtp_credential.rotated", "smtp_credential.created", "domain.verified", "domain.created",
    ]  # fmt: skip
    times = [e["occurred_at"] for e in events]
    assert times == sorted(times, reverse=True) and all(t.endswith("Z") for t in times)
    by_type = {e["type"]: e for e in events}
    key_actor = {"type": "api_key", "id": str(tenant.key_id)}
    assert by_type["domain.created"]["actor"] == key_actor
    assert by_type["domain.verified"]["actor"] == {"type": "unknown", "id": None}
    assert by_type["domain.verified"]["source_ip"] is None
    assert by_type["smtp_credential.created"]["actor"] == key_actor
    assert by_type["smtp_credential.rotated"]["actor"] == {"type": "session", "id": "user-42"}
    assert by_type["smtp_credential.suspended"]["actor"] == {"type": "operator", "id": getpass.getuser()}
    assert by_type["smtp_credential.suspended"]["data"]["reason"] == "abuse"
    assert by_type["smtp_credential.resumed"]["actor"] == key_actor
    for entry in (by_type["domain.created"], by_type["smtp_credential.rotated"]):
        assert entry["source_ip"] == "127.0.0.1"  # httpx's ASGI transport's client address
    assert by_type["smtp_credential.created"]["subject"] == {"type": "smtp_credential", "id": credential["id"]}
    assert by_type["domain.created"]["subject"] == {"type": "domain", "id": history["domain"]["id"]}
    assert set(events[0]) == {"id", "type", "occurred_at", "actor", "source_ip", "subject", "data"}

    # No secret or hash anywhere: neither password, nor its hash, nor a field that could carry one.
    one = await _until(live, tenant.headers, 5, f"/v1/smtp/credentials/{credential['id']}/events")
    for body in (json.dumps(events), json.dumps(one)):
        for password in history["passwords"]:
            assert password not in body and hash_secret(password) not in body
        assert "hash" not in body and "password" not in body and "taifa-verification=" not in body
    assert [e["type"] for e in one] == [e["type"] for e in events[:5]]
    assert [e["id"] for e in one] == [e["id"] for e in events[:5]]


async def test_another_accounts_credential_is_the_same_404_as_a_random_id(live, history) -> None:
    credential = history["credential"]
    await _until(live, history["tenant"].headers, 7)
    intruder = await live.tenant()
    theirs = await live.client.get(f"/v1/smtp/credentials/{credential['id']}/events", headers=intruder.headers)
    random = await live.client.get(f"/v1/smtp/credentials/{uuid.uuid4()}/events", headers=intruder.headers)
    assert theirs.status_code == random.status_code == 404
    assert theirs.json() == random.json() and theirs.json()["error"]["code"] == "not_found"
    assert (await _feed(live, intruder.headers)) == {"data": [], "next_cursor": None}
    unauthenticated = await live.client.get("/v1/events")
    assert unauthenticated.status_code == 401


async def test_pages_walk_the_whole_feed_once_and_bad_parameters_are_422(live, history) -> None:
    headers = history["tenant"].headers
    everything = await _until(live, headers, 7)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = await _feed(live, headers, **params)
        seen += [e["id"] for e in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == [e["id"] for e in everything]
    first = await _feed(live, headers, limit=7)
    assert first["next_cursor"] is None and len(first["data"]) == 7
    for bad in (
        {"limit": 0},
        {"limit": 201},
        {"limit": "x"},
        {"limit": "5.0"},
        {"limit": "05"},
        {"limit": [200, 5]},  # repeated: neither is taken
        {"cursor": "not-a-cursor"},
    ):
        response = await live.client.get("/v1/events", params=bad, headers=headers)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    # A cursor of another list is refused too.
    other = paging.encode_cursor("domains", paging.Position(datetime.now(UTC), uuid.uuid4()))
    response = await live.client.get("/v1/events", params={"cursor": other}, headers=headers)
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"


async def test_a_released_domain_is_in_the_feed_after_its_credentials_deactivation(live) -> None:
    # Releasing a domain frees its name for other accounts: the trail (and the webhooks) must say so, not only
    # show its credential deactivated without a cause.
    tenant = await live.tenant()
    domain = await live.verified_domain(tenant)
    created = await live.credential(tenant, domain["id"])
    assert created.status_code == 201, created.text
    released = await live.client.delete(f"/v1/domains/{domain['id']}", headers=tenant.headers)
    assert released.status_code == 204, released.text
    events = await _until(live, tenant.headers, 5)
    assert [e["type"] for e in events][:2] in (
        ["domain.released", "smtp_credential.deactivated"],
        ["smtp_credential.deactivated", "domain.released"],  # one transaction: the same instant, ordered by id
    )
    entry = next(e for e in events if e["type"] == "domain.released")
    assert entry["subject"] == {"type": "domain", "id": domain["id"]}
    assert entry["actor"] == {"type": "api_key", "id": str(tenant.key_id)}
    released_at = entry["data"]["released_at"]
    expected = {"domain_id": domain["id"], "name": domain["name"], "reason": "owner", "released_at": released_at}
    assert entry["data"] == expected
    assert released_at.endswith("Z")

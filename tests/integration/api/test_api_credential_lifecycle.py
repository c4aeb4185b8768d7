"""The credential lifecycle of docs/api.md ("Credential lifecycle") through the real app, PostgreSQL, Redis, the
broker and the real projector: every row (GET, rotate, DELETE a secret, suspend, resume, PATCH), its errors,
read-your-writes (the auth cache holds the change when the response returns), two concurrent rotations,
BOLA on every new path and verb, mass assignment, CSRF on cookie-authenticated changes."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import jwt
import pytest
import redis.asyncio as aioredis
from api_support import event_rows, running_api
from taifa_events import auth_cache, hash_secret
from taifa_events.secrets import SMTP_PASSWORD_PATTERN

JWT_SECRET = "test-hs256-secret-that-is-long-enough-0123456789"  # make_settings' api_jwt_secret


async def _setup(api, plan: str = "pro"):
    tenant = await api.tenant(plan=plan)
    domain = await api.verified_domain(tenant)
    response = await api.credential(tenant, domain["id"])
    assert response.status_code == 201, response.text
    return tenant, response.json()


async def _entry(api, username: str) -> auth_cache.AuthCacheEntry | None:
    cache = aioredis.Redis.from_url(api.settings.redis_url, decode_responses=True)
    try:
        return auth_cache.AuthCacheEntry.from_redis(await cache.hgetall(auth_cache.auth_key(username)))
    finally:
        await cache.aclose()


async def _event_count(api) -> int:
    return len(await event_rows(api.settings.database_url))


def _url(credential: dict, suffix: str = "") -> str:
    return f"/v1/smtp/credentials/{credential['id']}{suffix}"


def _error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


# --- GET -----------------------------------------------------------------------------------------------------


async def test_get_returns_the_credential_as_listed_without_the_password(live) -> None:
    tenant, created = await _setup(live)
    got = await live.client.get(_url(created), headers=tenant.headers)
    assert got.status_code == 200, got.text
    expected = {k: v for k, v in created.items() if k != "password"} | {"deactivated_at": None}
    assert got.json() == expected
    listed = (await live.client.get("/v1/smtp/credentials", headers=tenant.headers)).json()
    assert listed == [expected]


# --- rotation ------------------------------------------------------------------------------------------------


async def test_rotation_returns_a_new_password_that_works_at_once_while_the_previous_one_has_its_grace(live) -> None:
    tenant, created = await _setup(live)
    before = datetime.now(UTC)
    response = await live.client.post(_url(created, "/rotate"), headers=tenant.headers)
    assert response.status_code == 201, response.text
    assert response.headers["X-Taifa-Projection"] == "applied"
    body = response.json()
    assert re.fullmatch(SMTP_PASSWORD_PATTERN, body["password"]) and body["password"] != created["password"]
    assert body["username"] == created["username"] and body["id"] == created["id"]
    previous = body["previous_secret"]
    assert previous["id"] == created["secrets"][0]["id"]
    expiry = datetime.fromisoformat(previous["expires_at"].replace("Z", "+00:00"))
    assert expiry.microsecond == 0  # whole seconds, as the relay enforces it: the grace's end is cut to its second
    assert (before + timedelta(seconds=86400)).replace(microsecond=0) <= expiry <= datetime.now(UTC) + timedelta(days=1)
    assert [s["id"] for s in body["secrets"]][1:] == [previous["id"]]
    assert body["secrets"][1]["expires_at"] == previous["expires_at"] and body["secrets"][0]["expires_at"] is None
    # From the 201 on the relay's cache holds both secrets, the new one first, the old one with its expiry.
    entry = await _entry(live, created["username"])
    assert entry is not None
    assert [s.hash for s in entry.secrets] == [hash_secret(body["password"]), hash_secret(created["password"])]
    assert entry.secrets[1].expires_at == int(expiry.timestamp())
    got = (await live.client.get(_url(created), headers=tenant.headers)).json()
    assert got == {k: v for k, v in body.items() if k not in ("password", "previous_secret")}


async def test_rotation_with_grace_zero_retires_the_previous_secret_from_the_201_on(live) -> None:
    tenant, created = await _setup(live)
    response = await live.client.post(
        _url(created, "/rotate"), json={"grace_period_seconds": 0}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert [s["id"] for s in body["secrets"]] != [created["secrets"][0]["id"]] and len(body["secrets"]) == 1
    entry = await _entry(live, created["username"])
    assert entry is not None
    assert [s.hash for s in entry.valid_secrets(datetime.now(UTC).timestamp())] == [hash_secret(body["password"])]


async def test_rotating_during_a_grace_period_is_409_until_the_previous_secret_is_deleted(live) -> None:
    tenant, created = await _setup(live)
    first = (await live.client.post(_url(created, "/rotate"), headers=tenant.headers)).json()
    count = await _event_count(live)
    _error(await live.client.post(_url(created, "/rotate"), headers=tenant.headers), 409, "rotation_in_progress")
    assert await _event_count(live) == count
    previous = first["previous_secret"]["id"]
    deleted = await live.client.delete(_url(created, f"/secrets/{previous}"), headers=tenant.headers)
    assert deleted.status_code == 204 and deleted.headers["X-Taifa-Projection"] == "applied"
    entry = await _entry(live, created["username"])
    assert entry is not None and [s.id for s in entry.valid_secrets(datetime.now(UTC).timestamp())] == [
        uuid.UUID(first["secrets"][0]["id"])
    ]
    again = await live.client.delete(_url(created, f"/secrets/{previous}"), headers=tenant.headers)
    assert again.status_code == 204 and await _event_count(live) == count + 1  # idempotent, no new event
    assert (await live.client.post(_url(created, "/rotate"), headers=tenant.headers)).status_code == 201


async def test_the_newest_secret_cannot_be_deleted_and_an_unknown_secret_is_404(live) -> None:
    tenant, created = await _setup(live)
    newest = created["secrets"][0]["id"]
    _error(await live.client.delete(_url(created, f"/secrets/{newest}"), headers=tenant.headers), 409, "last_secret")
    _error(
        await live.client.delete(_url(created, f"/secrets/{uuid.uuid4()}"), headers=tenant.headers), 404, "not_found"
    )


async def test_two_concurrent_rotations_give_one_201_and_one_409(make_settings, live) -> None:
    tenant, created = await _setup(live)
    async with running_api(make_settings()) as other_pod:
        responses = await asyncio.gather(
            live.client.post(_url(created, "/rotate"), headers=tenant.headers),
            other_pod.client.post(_url(created, "/rotate"), headers=tenant.headers),
        )
    assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
    assert [r.json()["error"]["code"] for r in responses if r.status_code == 409] == ["rotation_in_progress"]
    secrets = await live.pool.fetchval(
        "SELECT count(*) FROM credential_secrets WHERE credential_id = $1", uuid.UUID(created["id"])
    )
    assert secrets == 2


@pytest.mark.parametrize("body", [{"grace_period_seconds": -1}, {"grace_period_seconds": 604801}, {"grace": 5}])
async def test_a_rotation_body_out_of_range_or_with_unknown_fields_is_422(live, body) -> None:
    tenant, created = await _setup(live)
    _error(await live.client.post(_url(created, "/rotate"), json=body, headers=tenant.headers), 422, "validation_error")


# --- suspend and resume --------------------------------------------------------------------------------------


async def test_suspend_and_resume_answer_200_and_repeats_append_no_event(live) -> None:
    tenant, created = await _setup(live)
    suspended = await live.client.post(_url(created, "/suspend"), json={"reason": "abuse"}, headers=tenant.headers)
    assert suspended.status_code == 200 and suspended.headers["X-Taifa-Projection"] == "applied"
    body = suspended.json()
    assert (body["status"], body["is_active"], body["suspension_reason"]) == ("suspended", True, "abuse")
    entry = await _entry(live, created["username"])
    assert entry is not None and entry.status == "suspended"
    count = await _event_count(live)
    repeat = await live.client.post(_url(created, "/suspend"), headers=tenant.headers)
    assert repeat.status_code == 200 and repeat.json()["suspension_reason"] == "abuse"
    assert await _event_count(live) == count
    resumed = await live.client.post(_url(created, "/resume"), headers=tenant.headers)
    assert resumed.status_code == 200
    assert (resumed.json()["status"], resumed.json()["suspended_at"]) == ("active", None)
    entry = await _entry(live, created["username"])
    assert entry is not None and entry.status == "active"
    assert (await live.client.post(_url(created, "/resume"), headers=tenant.headers)).status_code == 200
    assert await _event_count(live) == count + 1
    assert (await live.client.get(_url(created), headers=tenant.headers)).json()["status"] == "active"


@pytest.mark.parametrize("body", [{"reason": "x" * 201}, {"reason": "a\nb"}, {"reason": "x", "status": "active"}])
async def test_a_bad_suspension_body_is_422(live, body) -> None:
    tenant, created = await _setup(live)
    _error(
        await live.client.post(_url(created, "/suspend"), json=body, headers=tenant.headers), 422, "validation_error"
    )


async def test_a_suspended_credential_blocks_a_second_one_and_counts_against_the_plan(live) -> None:
    tenant, created = await _setup(live, plan="free")  # one credential
    await live.client.post(_url(created, "/suspend"), headers=tenant.headers)
    _error(await live.credential(tenant, created["domain_id"]), 409, "credential_exists")
    other = await live.verified_domain(tenant)
    _error(await live.credential(tenant, other["id"]), 403, "credential_limit_reached")


# --- restrictions --------------------------------------------------------------------------------------------


async def test_patch_sets_restrictions_the_relay_sees_and_null_or_empty_clears_them(live) -> None:
    tenant, created = await _setup(live)
    expiry = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
    patch = {
        "allowed_cidrs": ["203.0.113.0/24", "2001:DB8::/48"],
        "expires_at": expiry.isoformat().replace("+00:00", "Z"),
        "limits": {"messages_per_minute": 30},
    }
    response = await live.client.patch(_url(created), json=patch, headers=tenant.headers)
    assert response.status_code == 200 and response.headers["X-Taifa-Projection"] == "applied"
    body = response.json()
    assert body["allowed_cidrs"] == ["203.0.113.0/24", "2001:db8::/48"]
    assert body["expires_at"] == patch["expires_at"]
    assert body["limits"] == {"messages_per_minute": 30, "messages_per_day": None}
    entry = await _entry(live, created["username"])
    assert entry is not None and entry.allowed_cidrs == ("203.0.113.0/24", "2001:db8::/48")
    assert entry.expires_at == int(expiry.timestamp())
    assert (await live.client.get(_url(created), headers=tenant.headers)).json() == body
    # One field at a time: the others stay.
    per_day = await live.client.patch(_url(created), json={"limits": {"messages_per_day": 500}}, headers=tenant.headers)
    assert per_day.json()["limits"] == {"messages_per_minute": 30, "messages_per_day": 500}
    assert per_day.json()["allowed_cidrs"] == body["allowed_cidrs"]
    cleared = await live.client.patch(
        _url(created), json={"allowed_cidrs": [], "expires_at": None, "limits": None}, headers=tenant.headers
    )
    assert cleared.status_code == 200
    assert (cleared.json()["allowed_cidrs"], cleared.json()["expires_at"]) == ([], None)
    assert cleared.json()["limits"] == {"messages_per_minute": None, "messages_per_day": None}
    entry = await _entry(live, created["username"])
    assert entry is not None and (entry.allowed_cidrs, entry.expires_at) == ((), None)


@pytest.mark.parametrize(
    "patch",
    [
        {"allowed_cidrs": ["203.0.113.7/24"]},  # host bits set
        {"allowed_cidrs": ["203.0.113.0/33"]},
        {"allowed_cidrs": ["example.com"]},
        {"allowed_cidrs": [f"10.0.{i}.0/24" for i in range(65)]},
        {"expires_at": "2020-01-01T00:00:00Z"},
        {"expires_at": "2999-01-01T00:00:00"},  # no offset
        {"expires_at": 32503680000},  # Unix seconds (2999): the contract's times are RFC 3339 text
        {"expires_at": "32503680000"},
        {"expires_at": "2999-01-01"},  # a date, no time
        {"expires_at": "9999-12-31T23:00:00-05:00"},  # no UTC time (past year 9999): was a 500
        {"expires_at": "9000-01-01T00:00:00Z"},  # outside 1970-9000, as the usage queries
        {"limits": {"messages_per_minute": 0}},
        {"limits": {"messages_per_day": 100001}},  # over the pro plan's daily quota
        {"limits": {"messages_per_hour": 5}},
        {"status": "active"},
        {"username": "someone@else.example"},
        {"secrets": []},
    ],
)
async def test_invalid_or_unknown_patch_fields_are_422_and_change_nothing(live, patch) -> None:
    tenant, created = await _setup(live)
    count = await _event_count(live)
    _error(await live.client.patch(_url(created), json=patch, headers=tenant.headers), 422, "validation_error")
    assert await _event_count(live) == count


async def test_limits_are_bounded_by_the_plans_daily_quota_from_the_settings(make_settings, broker, projector) -> None:
    settings = make_settings(api_plan_daily_quota_free=50)
    async with running_api(settings) as api:
        tenant, created = await _setup(api, plan="free")
        ok = await api.client.patch(_url(created), json={"limits": {"messages_per_day": 50}}, headers=tenant.headers)
        assert ok.status_code == 200, ok.text
        over = await api.client.patch(_url(created), json={"limits": {"messages_per_day": 51}}, headers=tenant.headers)
        _error(over, 422, "validation_error")


# --- a deactivated credential ---------------------------------------------------------------------------------


async def test_every_change_of_a_deactivated_credential_is_409_credential_inactive(live) -> None:
    tenant, created = await _setup(live)
    assert (await live.client.delete(_url(created), headers=tenant.headers)).status_code == 204
    count = await _event_count(live)
    secret = created["secrets"][0]["id"]
    c, h = live.client, tenant.headers
    for response in (
        await c.post(_url(created, "/rotate"), headers=h),
        await c.post(_url(created, "/suspend"), headers=h),
        await c.post(_url(created, "/resume"), headers=h),
        await c.patch(_url(created), json={"allowed_cidrs": []}, headers=h),
        await c.delete(_url(created, f"/secrets/{secret}"), headers=h),
    ):
        _error(response, 409, "credential_inactive")
    assert await _event_count(live) == count
    got = (await c.get(_url(created), headers=h)).json()
    assert (got["status"], got["is_active"], got["secrets"]) == ("deactivated", False, [])
    listed = (await c.get("/v1/smtp/credentials", headers=h)).json()
    assert [item["secrets"] for item in listed if item["id"] == created["id"]] == [[]]


# --- BOLA, CSRF ----------------------------------------------------------------------------------------------


async def test_another_accounts_credential_is_the_same_404_as_an_unknown_one_on_every_lifecycle_route(live) -> None:
    alice = await live.tenant()
    bob, bobs = await _setup(live)
    unknown = {"id": str(uuid.uuid4())}
    secret = bobs["secrets"][0]["id"]
    count = await _event_count(live)
    c, h = live.client, alice.headers
    calls = [
        lambda cred: c.get(_url(cred), headers=h),
        lambda cred: c.post(_url(cred, "/rotate"), headers=h),
        lambda cred: c.post(_url(cred, "/rotate"), json={"grace_period_seconds": 0}, headers=h),
        lambda cred: c.delete(_url(cred, f"/secrets/{secret}"), headers=h),
        lambda cred: c.post(_url(cred, "/suspend"), json={"reason": "x"}, headers=h),
        lambda cred: c.post(_url(cred, "/resume"), headers=h),
        lambda cred: c.patch(_url(cred), json={"allowed_cidrs": ["10.0.0.0/8"]}, headers=h),
    ]
    for call in calls:
        foreign, random = await call(bobs), await call(unknown)
        assert foreign.status_code == random.status_code == 404
        assert foreign.content == random.content
        drop = {"date", "content-length", "x-request-id"}  # a new request id per request
        assert {k: v for k, v in foreign.headers.items() if k not in drop} == {
            k: v for k, v in random.headers.items() if k not in drop
        }
    assert await _event_count(live) == count
    mine = (await c.get(_url(bobs), headers=bob.headers)).json()
    assert (mine["status"], mine["allowed_cidrs"], len(mine["secrets"])) == ("active", [], 1)


async def test_cookie_authenticated_lifecycle_changes_need_the_csrf_header(live) -> None:
    tenant, created = await _setup(live)
    token = jwt.encode(
        {"account_id": str(tenant.account_id), "exp": int(datetime.now(UTC).timestamp()) + 600}, JWT_SECRET, "HS256"
    )
    cookies = {"Cookie": f"taifa_session={token}; taifa_csrf=abc"}
    c = live.client
    for response in (
        await c.post(_url(created, "/rotate"), headers=cookies),
        await c.post(_url(created, "/suspend"), headers=cookies),
        await c.post(_url(created, "/resume"), headers=cookies),
        await c.patch(_url(created), json={"allowed_cidrs": []}, headers=cookies),
        await c.delete(_url(created, f"/secrets/{uuid.uuid4()}"), headers=cookies),
    ):
        _error(response, 403, "csrf_failed")
    assert (await c.get(_url(created), headers=cookies)).status_code == 200
    ok = await c.post(_url(created, "/suspend"), headers={**cookies, "X-CSRF-Token": "abc"})
    assert ok.status_code == 200 and ok.json()["status"] == "suspended"


async def test_a_repeated_command_waits_for_the_relays_cache_like_the_first(live) -> None:
    """A repeat changes nothing and appends nothing, but its answer promises the same: it waits until the auth
    cache holds the credential's newest event, and says so (the first request's own wait may have ended pending)."""
    tenant, created = await _setup(live)
    for path, method in (("/suspend", "POST"), ("/suspend", "POST"), ("", "DELETE"), ("", "DELETE")):
        answer = await live.client.request(method, _url(created, path), headers=tenant.headers)
        assert answer.status_code in (200, 204), answer.text
        assert answer.headers["X-Taifa-Projection"] == "applied", (method, path)
    entry = await _entry(live, created["username"])
    assert entry is None or not entry.active


async def test_a_rotation_answers_its_password_when_the_read_model_is_gone_right_after_the_commit(
    live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The body's usage comes from the read model after the COMMIT; PostgreSQL dropping the connection then used to
    answer 503 ("nothing changed") for a committed rotation: its password was never shown, and the retry met
    rotation_in_progress (a review's probe). Now the answer is the 201 with the password and the usage fields null."""
    from taifa_api.adapters import read_models

    tenant, created = await _setup(live)
    original, drops = read_models.get_credential, [asyncpg.exceptions.ConnectionDoesNotExistError("connection lost")]

    async def connection_lost_once(*args, **kwargs):  # the read after the COMMIT meets a dropped connection
        if drops:
            raise drops.pop()
        return await original(*args, **kwargs)

    monkeypatch.setattr(read_models, "get_credential", connection_lost_once)
    rotated = await live.client.post(f"/v1/smtp/credentials/{created['id']}/rotate", headers=tenant.headers)
    assert rotated.status_code == 201, rotated.text
    body = rotated.json()
    assert not drops, "the fault was injected"
    assert re.fullmatch(SMTP_PASSWORD_PATTERN, body["password"])
    assert [secret["last_used_at"] for secret in body["secrets"]] == [None, None]
    entry = await _entry(live, created["username"])
    assert entry is not None and entry.secrets[0].hash == hash_secret(body["password"])  # the relay takes it

"""Usage (docs/api.md, "Usage"): `GET /v1/smtp/credentials/{id}/usage` and `GET /v1/usage` answer from the
projector's usage read model with every hour / UTC day of the range, zeros included; bad ranges are 422; another
account's credential is the same 404 as an unknown one; the credential body's `last_used_*` come from the read
model.

The read-model rows are written straight into the projector's tables (its own migration makes them): this
module tests the API's queries and rules, not the flusher (tests/integration/projector and tests/e2e do that).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

T0 = datetime(2026, 11, 20, tzinfo=UTC)


async def _credential(api, account_id: uuid.UUID) -> uuid.UUID:
    credential_id, domain_id = uuid.uuid4(), uuid.uuid4()
    name = f"u{uuid.uuid4().hex[:8]}.example"
    await api.pool.execute(
        "INSERT INTO rm_smtp_credentials (credential_id, account_id, domain_id, domain, username, is_active, "
        "created_at, deactivated_at, position) VALUES ($1, $2, $3, $4, $5, true, $6, NULL, 1)",
        credential_id,
        account_id,
        domain_id,
        name,
        f"x@{name}",
        T0 - timedelta(days=30),
    )
    return credential_id


async def _window(
    api,
    credential_id: uuid.UUID,
    account_id: uuid.UUID,
    start: datetime,
    refused: dict[str, int] | None = None,
    generation: str = "",
    **n,
) -> None:
    counts = {"messages": 0, "recipients": 0, "bytes": 0, "auth_successes": 0, "auth_failures": 0, **n}
    await api.pool.execute(
        "INSERT INTO rm_usage_windows (credential_id, account_id, window_start, messages, recipients, bytes, "
        "auth_successes, auth_failures, refused, reported_at, generation) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, now(), $10)",
        credential_id,
        account_id,
        start,
        counts["messages"],
        counts["recipients"],
        counts["bytes"],
        counts["auth_successes"],
        counts["auth_failures"],
        refused or {},
        generation,
    )


def _zero(start: datetime) -> dict[str, Any]:
    return {
        "start": start.isoformat().replace("+00:00", "Z"),
        "messages": 0,
        "recipients": 0,
        "bytes": 0,
        "auth_successes": 0,
        "auth_failures": 0,
        "refused": {},
    }


def _start(moment: datetime) -> str:
    return _zero(moment)["start"]


async def test_credential_usage_lists_every_hour_of_the_range_with_zeros_and_the_windows_totals(api) -> None:
    tenant = await api.tenant()
    credential = await _credential(api, tenant.account_id)
    await _window(api, credential, tenant.account_id, T0 + timedelta(hours=1), messages=3, recipients=5, bytes=900)
    await _window(
        api,
        credential,
        tenant.account_id,
        T0 + timedelta(hours=3),
        refused={"limits": 2, "auth_cidr": 1},
        auth_successes=4,
        auth_failures=1,
    )
    await _window(api, credential, tenant.account_id, T0 + timedelta(hours=5), messages=99)  # after `to`

    response = await api.client.get(
        f"/v1/smtp/credentials/{credential}/usage",
        params={"from": "2026-11-20T00:30:00Z", "to": "2026-11-20T04:00:00+00:00"},
        headers=tenant.headers,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["credential_id"] == str(credential)
    assert body["granularity"] == "hour"
    expected = [_zero(T0 + timedelta(hours=h)) for h in range(4)]  # 00:00 overlaps [00:30, 04:00); 04:00 does not
    expected[1].update(messages=3, recipients=5, bytes=900)
    expected[3].update(auth_successes=4, auth_failures=1, refused={"auth_cidr": 1, "limits": 2})
    assert body["series"] == expected


async def test_daily_usage_adds_the_hours_of_each_utc_day(api) -> None:
    tenant = await api.tenant()
    credential = await _credential(api, tenant.account_id)
    for hour, refused in ((0, {"quota": 1}), (23, {"quota": 2}), (24, {"policy": 1})):
        await _window(api, credential, tenant.account_id, T0 + timedelta(hours=hour), refused=refused, messages=1)

    response = await api.client.get(
        f"/v1/smtp/credentials/{credential}/usage",
        # +02:00: 2026-11-20T02:00+02:00 is midnight UTC; buckets are UTC days whatever the offset given.
        params={"from": "2026-11-20T02:00:00+02:00", "to": "2026-11-23T00:00:00Z", "granularity": "day"},
        headers=tenant.headers,
    )

    assert response.status_code == 200, response.text
    series = response.json()["series"]
    assert [bucket["start"] for bucket in series] == [_start(T0 + timedelta(days=d)) for d in range(3)]
    assert [(b["messages"], b["refused"]) for b in series] == [(2, {"quota": 3}), (1, {"policy": 1}), (0, {})]


async def test_an_hours_generations_add_up(api) -> None:
    """The hour's hash was counted again from zero after Redis lost it: both generations' totals are the hour's."""
    tenant = await api.tenant()
    credential = await _credential(api, tenant.account_id)
    await _window(api, credential, tenant.account_id, T0, refused={"policy": 1}, generation="", messages=3)
    await _window(api, credential, tenant.account_id, T0, refused={"policy": 2}, generation="relay.9", messages=2)
    response = await api.client.get(
        f"/v1/smtp/credentials/{credential}/usage",
        params={"from": "2026-11-20T00:00:00Z", "to": "2026-11-20T01:00:00Z"},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    ((bucket,),) = [response.json()["series"]]
    assert (bucket["messages"], bucket["refused"]) == (5, {"policy": 3})


async def test_a_day_bucket_holds_its_whole_utc_day_at_either_end_of_the_range(api) -> None:
    tenant = await api.tenant()
    credential = await _credential(api, tenant.account_id)
    await _window(api, credential, tenant.account_id, T0 + timedelta(hours=6), messages=3)
    await _window(api, credential, tenant.account_id, T0 + timedelta(hours=18), messages=5)
    path = f"/v1/smtp/credentials/{credential}/usage"
    seen = []
    for bounds in (("2026-11-20T12:00:00Z", "2026-11-21T12:00:00Z"), ("2026-11-19T12:00:00Z", "2026-11-20T12:00:00Z")):
        response = await api.client.get(
            path, params={"from": bounds[0], "to": bounds[1], "granularity": "day"}, headers=tenant.headers
        )
        assert response.status_code == 200, response.text
        seen.append({b["start"]: b["messages"] for b in response.json()["series"]}[_start(T0)])
    assert seen == [8, 8]  # the first bucket, then the last: the same day, the same totals


async def test_usage_defaults_to_the_last_24_hours_hourly_up_to_the_current_hour(api) -> None:
    tenant = await api.tenant()
    credential = await _credential(api, tenant.account_id)
    now = datetime.now(UTC)
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    await _window(api, credential, tenant.account_id, this_hour, messages=3)

    response = await api.client.get(f"/v1/smtp/credentials/{credential}/usage", headers=tenant.headers)

    assert response.status_code == 200, response.text
    series = response.json()["series"]
    assert series[-1]["start"] == _start(this_hour)
    assert series[-1]["messages"] == 3
    assert series[0]["start"] == _start((now - timedelta(hours=24)).replace(minute=0, second=0, microsecond=0))
    assert len(series) in (24, 25, 26)  # 25 unless a request straddles an hour boundary or lands on one


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-11-20T04:00:00Z", "to": "2026-11-20T04:00:00Z"},  # from == to
        {"from": "2026-11-21T00:00:00Z", "to": "2026-11-20T00:00:00Z"},  # from after to
        {"from": "2026-08-01T00:00:00Z", "to": "2026-11-20T00:00:00Z"},  # more than 90 days
        {"from": "2026-11-20T00:00:00", "to": "2026-11-21T00:00:00Z"},  # no offset
        {"from": "2026-11-20", "to": "2026-11-21T00:00:00Z"},  # a date only
        {"from": "1763596800", "to": "2026-11-21T00:00:00Z"},  # unix seconds
        {"from": "2026-11-20T00:00:00 01:00"},  # an unencoded "+"
        {"from": "2026-02-30T00:00:00Z"},
        {"granularity": "week"},
        {"granularity": ""},
        {"limit": "10"},  # unknown parameter
        {"form": "2026-11-20T00:00:00Z"},  # a typo is not silently ignored
        {"to": "9999-12-31T23:59:59Z"},
    ],
)
async def test_bad_usage_queries_are_422_validation_error_on_both_routes(api, params: dict[str, str]) -> None:
    tenant = await api.tenant()
    credential = await _credential(api, tenant.account_id)
    for path in (f"/v1/smtp/credentials/{credential}/usage", "/v1/usage"):
        response = await api.client.get(path, params=params, headers=tenant.headers)
        assert response.status_code == 422, (path, params, response.text)
        assert response.json()["error"]["code"] == "validation_error"


async def test_a_repeated_usage_parameter_is_422(api) -> None:
    tenant = await api.tenant()
    response = await api.client.get("/v1/usage?granularity=hour&granularity=day", headers=tenant.headers)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_exactly_90_days_is_accepted(api) -> None:
    tenant = await api.tenant()
    credential = await _credential(api, tenant.account_id)
    response = await api.client.get(
        f"/v1/smtp/credentials/{credential}/usage",
        params={"from": "2026-08-22T00:00:00Z", "to": "2026-11-20T00:00:00Z", "granularity": "hour"},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["series"]) == 90 * 24


async def test_another_accounts_credential_usage_is_the_same_404_as_an_unknown_ones(api) -> None:
    alice, bob = await api.tenant(), await api.tenant()
    bobs = await _credential(api, bob.account_id)
    await _window(api, bobs, bob.account_id, T0, messages=7)
    params = {"from": "2026-11-20T00:00:00Z", "to": "2026-11-20T02:00:00Z"}

    foreign = await api.client.get(f"/v1/smtp/credentials/{bobs}/usage", params=params, headers=alice.headers)
    unknown = await api.client.get(f"/v1/smtp/credentials/{uuid.uuid4()}/usage", params=params, headers=alice.headers)

    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json() == unknown.json() == {"error": {"code": "not_found", "message": "Not found."}}
    own = await api.client.get("/v1/usage", params=params, headers=alice.headers)
    assert own.json()["by_credential"] == []
    assert all(bucket["messages"] == 0 for bucket in own.json()["series"])


async def test_account_usage_sums_its_credentials_and_splits_them(api) -> None:
    tenant = await api.tenant()
    first, second = await _credential(api, tenant.account_id), await _credential(api, tenant.account_id)
    quiet = await _credential(api, tenant.account_id)  # no usage in the range: not in the split
    await _window(api, first, tenant.account_id, T0, messages=2, recipients=3, refused={"limits": 1})
    await _window(api, second, tenant.account_id, T0, messages=5, recipients=5, refused={"limits": 2, "quota": 4})
    await _window(api, second, tenant.account_id, T0 + timedelta(hours=1), auth_failures=6)
    await _window(api, quiet, tenant.account_id, T0 - timedelta(days=2), messages=1)

    response = await api.client.get(
        "/v1/usage", params={"from": "2026-11-20T00:00:00Z", "to": "2026-11-20T02:00:00Z"}, headers=tenant.headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["account_id"] == str(tenant.account_id)
    assert body["granularity"] == "hour"
    hour0, hour1 = body["series"]
    assert (hour0["messages"], hour0["recipients"], hour0["refused"]) == (7, 8, {"limits": 3, "quota": 4})
    assert hour1["auth_failures"] == 6
    split = {item["credential_id"]: item["series"] for item in body["by_credential"]}
    assert set(split) == {str(first), str(second)}
    assert [b["messages"] for b in split[str(first)]] == [2, 0]
    assert [b["auth_failures"] for b in split[str(second)]] == [0, 6]


async def test_the_credential_body_shows_the_last_use_the_read_model_holds(api) -> None:
    tenant = await api.tenant()
    credential = await _credential(api, tenant.account_id)
    used = datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
    await api.pool.execute(
        "UPDATE rm_smtp_credentials SET last_used_at = $2, last_used_ip = '203.0.113.7' WHERE credential_id = $1",
        credential,
        used,
    )

    body = (await api.client.get(f"/v1/smtp/credentials/{credential}", headers=tenant.headers)).json()
    listed = (await api.client.get("/v1/smtp/credentials", headers=tenant.headers)).json()

    assert (body["last_used_at"], body["last_used_ip"]) == ("2026-11-27T08:30:00Z", "203.0.113.7")
    assert [(c["last_used_at"], c["last_used_ip"]) for c in listed] == [("2026-11-27T08:30:00Z", "203.0.113.7")]


async def test_each_secret_shows_its_last_use_from_the_read_model(api) -> None:
    tenant = await api.tenant()
    domain = await api.verified_domain(tenant)
    created = (await api.credential(tenant, domain["id"])).json()
    credential_id, secret_id = uuid.UUID(created["id"]), uuid.UUID(created["secrets"][0]["id"])
    # Without the projector running here, write the read model as it would (credential row + its secret).
    await api.pool.execute(
        "INSERT INTO rm_smtp_credentials (credential_id, account_id, domain_id, domain, username, is_active, "
        "created_at, position) VALUES ($1, $2, $3, $4, $5, true, now(), 1) ON CONFLICT DO NOTHING",
        credential_id,
        tenant.account_id,
        uuid.UUID(domain["id"]),
        domain["name"],
        created["username"],
    )
    await api.pool.execute(
        "INSERT INTO rm_credential_secrets (credential_id, secret_id, secret_hash, hash_scheme, created_at, position, "
        "last_used_at) VALUES ($1, $2, 'x', 'x', now(), 1, $3) ON CONFLICT (credential_id, secret_id) "
        "DO UPDATE SET last_used_at = EXCLUDED.last_used_at",
        credential_id,
        secret_id,
        datetime(2026, 11, 27, 9, tzinfo=UTC),
    )

    body = (await api.client.get(f"/v1/smtp/credentials/{credential_id}", headers=tenant.headers)).json()

    assert [(s["id"], s["last_used_at"]) for s in body["secrets"]] == [(str(secret_id), "2026-11-27T09:00:00Z")]

# ruff: noqa: S608 - table and column names are constants of this module; values are bind parameters.
"""Bounded lists (docs/api.md, "Paging"): keyset pages with `limit`, an opaque `cursor` and `Link: rel="next"`.

The read-model rows are written straight into the projector's tables (the real schema, made by its own
migration): this module tests the API's paging, not the projection, and 250 items take milliseconds.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

LINK = re.compile(r'^<(/v1/[a-z/]+)\?cursor=([A-Za-z0-9_-]+)&limit=(\d+)>; rel="next"$')
BASE = datetime(2026, 11, 1, tzinfo=UTC)


async def _insert_credentials(api, account_id: uuid.UUID, count: int, start: int = 0) -> list[str]:
    """`count` read-model credentials; every third shares its created_at with the previous one (ties)."""
    rows = []
    for i in range(start, start + count):
        created = BASE + timedelta(seconds=i - (i % 3 == 2))
        credential_id, domain_id = uuid.uuid4(), uuid.uuid4()
        rows.append(
            (credential_id, account_id, domain_id, f"d{i}.example", f"x@d{i}.example", True, created, None, i + 1)
        )
    await api.pool.executemany(
        "INSERT INTO rm_smtp_credentials (credential_id, account_id, domain_id, domain, username, is_active, "
        "created_at, deactivated_at, position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        rows,
    )
    return [str(r[0]) for r in rows]


async def _insert_domains(api, account_id: uuid.UUID, count: int, status: str = "pending") -> list[str]:
    rows = []
    for i in range(count):
        created = BASE + timedelta(seconds=i - (i % 3 == 2))
        domain_id = uuid.uuid4()
        name = f"p{uuid.uuid4().hex[:8]}.example"
        rows.append((domain_id, account_id, name, status, None, f"_taifa.{name}", "taifa-verification=x", created, i))
    await api.pool.executemany(
        "INSERT INTO rm_domains (domain_id, account_id, name, status, status_reason, verification_name, "
        "verification_value, created_at, position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        rows,
    )
    return [str(r[0]) for r in rows]


async def _expected(api, table: str, id_column: str, account_id: uuid.UUID, live_only: bool = False) -> list[str]:
    where = " AND status <> 'released'" if live_only else ""
    rows = await api.pool.fetch(
        f"SELECT {id_column} FROM {table} WHERE account_id = $1{where} ORDER BY created_at DESC, {id_column} DESC",
        account_id,
    )
    return [str(r[0]) for r in rows]


async def _walk(api, tenant, path: str, limit: int | None) -> tuple[list[str], list[int], list[str | None]]:
    """Follow `Link: rel="next"` from the first page; returns the ids, page sizes and Link headers seen."""
    url = path if limit is None else f"{path}?limit={limit}"
    ids: list[str] = []
    sizes: list[int] = []
    links: list[str | None] = []
    while url is not None:
        response = await api.client.get(url, headers=tenant.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert isinstance(body, list)
        ids += [item["id"] for item in body]
        sizes.append(len(body))
        link = response.headers.get("link")
        links.append(link)
        if link is None:
            url = None
        else:
            match = LINK.match(link)
            assert match, link
            assert match.group(1) == path
            url = f"{match.group(1)}?cursor={match.group(2)}&limit={match.group(3)}"
        assert len(sizes) < 20
    return ids, sizes, links


async def test_paging_through_250_credentials_returns_each_once_newest_first(api) -> None:
    tenant, other = await api.tenant(), await api.tenant()
    await _insert_credentials(api, tenant.account_id, 250)
    await _insert_credentials(api, other.account_id, 30)
    ids, sizes, links = await _walk(api, tenant, "/v1/smtp/credentials", 100)
    assert sizes == [100, 100, 50]
    assert ids == await _expected(api, "rm_smtp_credentials", "credential_id", tenant.account_id)
    assert len(set(ids)) == 250
    assert links[-1] is None and all(links[:-1])


async def test_paging_through_250_domains_leaves_released_ones_out(api) -> None:
    tenant = await api.tenant()
    await _insert_domains(api, tenant.account_id, 250)
    released = await _insert_domains(api, tenant.account_id, 7, status="released")
    ids, sizes, links = await _walk(api, tenant, "/v1/domains", 100)
    assert sizes == [100, 100, 50]
    assert ids == await _expected(api, "rm_domains", "domain_id", tenant.account_id, live_only=True)
    assert not set(released) & set(ids)
    assert links[-1] is None


async def test_default_limit_is_100_and_a_short_list_has_no_link(api) -> None:
    tenant, small = await api.tenant(), await api.tenant()
    await _insert_credentials(api, tenant.account_id, 101)
    first = await api.client.get("/v1/smtp/credentials", headers=tenant.headers)
    assert len(first.json()) == 100
    assert LINK.match(first.headers["link"]).group(3) == "100"
    await _insert_credentials(api, small.account_id, 100)
    exact = await api.client.get("/v1/smtp/credentials", headers=small.headers)
    assert len(exact.json()) == 100 and "link" not in exact.headers


async def test_pages_are_stable_when_items_are_added_between_them(api) -> None:
    tenant = await api.tenant()
    await _insert_credentials(api, tenant.account_id, 30)
    before = await _expected(api, "rm_smtp_credentials", "credential_id", tenant.account_id)
    first = await api.client.get("/v1/smtp/credentials?limit=10", headers=tenant.headers)
    await _insert_credentials(api, tenant.account_id, 5, start=1000)  # newer than every listed item
    match = LINK.match(first.headers["link"])
    rest = await api.client.get(f"/v1/smtp/credentials?cursor={match.group(2)}&limit=20", headers=tenant.headers)
    assert [c["id"] for c in first.json()] + [c["id"] for c in rest.json()] == before
    assert "link" not in rest.headers


@pytest.mark.parametrize(
    "limit",
    # Not read leniently as 5 or 10 either: a fraction, a sign, a leading zero, a separator, a space.
    ["0", "1001", "abc", "-1", "1.5", "", "100000000000000000000", "5.0", "%2B5", "05", "1_0", "%205", "5%20"],
)
@pytest.mark.parametrize("path", ["/v1/smtp/credentials", "/v1/domains"])
async def test_a_limit_outside_1_to_1000_is_422(api, path, limit) -> None:
    tenant = await api.tenant()
    response = await api.client.get(f"{path}?limit={limit}", headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize("path", ["/v1/smtp/credentials", "/v1/domains", "/v1/webhooks"])
@pytest.mark.parametrize("query", ["limit=1000&limit=5", "limit=5&limit=5", "cursor=a&cursor=b", "limit=5.0"])
async def test_a_repeated_or_lenient_limit_or_cursor_is_422(api, path, query) -> None:
    tenant = await api.tenant()
    response = await api.client.get(f"{path}?{query}", headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize("path", ["/v1/smtp/credentials", "/v1/domains"])
async def test_limits_1_and_1000_are_accepted(api, path) -> None:
    tenant = await api.tenant()
    for limit in (1, 1000):
        assert (await api.client.get(f"{path}?limit={limit}", headers=tenant.headers)).status_code == 200


async def test_a_tampered_or_foreign_cursor_is_422(api) -> None:
    tenant = await api.tenant()
    await _insert_credentials(api, tenant.account_id, 3)
    await _insert_domains(api, tenant.account_id, 3)
    credentials = await api.client.get("/v1/smtp/credentials?limit=1", headers=tenant.headers)
    domains = await api.client.get("/v1/domains?limit=1", headers=tenant.headers)
    cursor = LINK.match(credentials.headers["link"]).group(2)
    domain_cursor = LINK.match(domains.headers["link"]).group(2)
    flipped = cursor[:4] + ("A" if cursor[4] != "A" else "B") + cursor[5:]
    for path in (
        f"/v1/smtp/credentials?cursor={flipped}",
        f"/v1/smtp/credentials?cursor={cursor[:-2]}",
        f"/v1/smtp/credentials?cursor={cursor}xx",
        "/v1/smtp/credentials?cursor=",
        "/v1/smtp/credentials?cursor=%00",
        f"/v1/smtp/credentials?cursor={'A' * 5000}",
        f"/v1/smtp/credentials?cursor={domain_cursor}",
        f"/v1/domains?cursor={cursor}",
    ):
        response = await api.client.get(path, headers=tenant.headers)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    assert (await api.client.get(f"/v1/smtp/credentials?cursor={cursor}", headers=tenant.headers)).status_code == 200


async def test_a_cursor_never_reaches_another_accounts_items(api) -> None:
    alice, bob = await api.tenant(), await api.tenant()
    await _insert_credentials(api, alice.account_id, 5)
    await _insert_credentials(api, bob.account_id, 5)
    page = await api.client.get("/v1/smtp/credentials?limit=2", headers=alice.headers)
    cursor = LINK.match(page.headers["link"]).group(2)
    bobs = await api.client.get(f"/v1/smtp/credentials?cursor={cursor}", headers=bob.headers)
    assert bobs.status_code == 200
    assert {c["id"] for c in bobs.json()} <= set(
        await _expected(api, "rm_smtp_credentials", "credential_id", bob.account_id)
    )

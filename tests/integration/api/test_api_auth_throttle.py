"""Failed authentication is limited per client address before any lookup (issue 13 item 17), the client
address is the peer unless a trusted proxy names it, and the per-key limit holds while Redis is down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from api_support import ApiHarness, running_api
from prometheus_client import REGISTRY
from taifa_api.domain.api_keys import generate_api_key


def lookups() -> float:
    return REGISTRY.get_sample_value("taifa_api_key_lookups_total") or 0.0


@contextlib.asynccontextmanager
async def client_at(api: ApiHarness, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests arrive from peer `address`."""
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client


def bad_key() -> dict[str, str]:
    return {"Authorization": f"Bearer {generate_api_key()}"}  # well-formed: it costs a lookup when let through


async def test_failed_authentications_from_one_address_get_429_before_any_lookup(make_settings) -> None:
    settings = make_settings(api_auth_failure_limit=5, api_auth_failure_window_seconds=3600)
    async with running_api(settings) as api:
        tenant = await api.tenant()
        async with client_at(api, "203.0.113.7") as attacker, client_at(api, "198.51.100.9") as other:
            before = lookups()
            for _ in range(5):
                assert (await attacker.get("/v1/domains", headers=bad_key())).status_code == 401
            assert lookups() == before + 5
            for _ in range(30):
                refused = await attacker.get("/v1/domains", headers=bad_key())
                assert refused.status_code == 429
                assert refused.json() == {
                    "error": {"code": "rate_limited", "message": "Too many requests; retry later."}
                }
                assert int(refused.headers["Retry-After"]) >= 1
            assert lookups() == before + 5  # the refused attempts cost no database lookup
            # Another address is not affected, with a bad key or a good one.
            assert (await other.get("/v1/domains", headers=bad_key())).status_code == 401
            assert (await other.get("/v1/domains", headers=tenant.headers)).status_code == 200


async def test_successful_requests_do_not_count_against_the_address(make_settings) -> None:
    async with running_api(make_settings(api_auth_failure_limit=3, api_auth_failure_window_seconds=3600)) as api:
        tenant = await api.tenant()
        async with client_at(api, "203.0.113.8") as client:
            for _ in range(10):
                assert (await client.get("/v1/domains", headers=tenant.headers)).status_code == 200
            statuses = [(await client.get("/v1/domains", headers=bad_key())).status_code for _ in range(4)]
            assert statuses == [401, 401, 401, 429]


async def test_a_busy_client_with_a_valid_key_is_never_throttled_by_its_own_concurrency(make_settings) -> None:
    """Every attempt reserves a token until it authenticates; a credential that has just authenticated skips the
    reservation, so 50 parallel requests of one app server are not mistaken for failures."""
    async with running_api(make_settings(api_auth_failure_limit=3, api_auth_failure_window_seconds=3600)) as api:
        tenant = await api.tenant()
        async with client_at(api, "203.0.113.9") as client:
            assert (await client.get("/v1/domains", headers=tenant.headers)).status_code == 200
            responses = await asyncio.gather(*(client.get("/v1/domains", headers=tenant.headers) for _ in range(50)))
            assert [r.status_code for r in responses] == [200] * 50
            # Failures from the same address are still limited.
            statuses = [(await client.get("/v1/domains", headers=bad_key())).status_code for _ in range(4)]
            assert statuses == [401, 401, 401, 429]


async def test_ipv6_clients_are_limited_per_64(make_settings) -> None:
    async with running_api(make_settings(api_auth_failure_limit=2, api_auth_failure_window_seconds=3600)) as api:
        statuses = []
        for host in ("2001:db8:1:2::a", "2001:db8:1:2::b", "2001:db8:1:2:ffff::1"):
            async with client_at(api, host) as client:
                statuses.append((await client.get("/v1/domains", headers=bad_key())).status_code)
        async with client_at(api, "2001:db8:1:3::a") as neighbour:
            statuses.append((await neighbour.get("/v1/domains", headers=bad_key())).status_code)
        assert statuses == [401, 401, 429, 401]


async def test_forwarded_for_names_the_client_only_behind_a_trusted_proxy(make_settings) -> None:
    settings = make_settings(
        api_auth_failure_limit=2, api_auth_failure_window_seconds=3600, api_trusted_proxies="10.0.0.0/8"
    )
    async with contextlib.AsyncExitStack() as stack:
        api = await stack.enter_async_context(running_api(settings))
        ingress = await stack.enter_async_context(client_at(api, "10.1.2.3"))
        direct = await stack.enter_async_context(client_at(api, "192.0.2.50"))

        async def status(client: httpx.AsyncClient, forwarded_for: str) -> int:
            headers = {**bad_key(), "X-Forwarded-For": forwarded_for}
            return (await client.get("/v1/domains", headers=headers)).status_code

        assert [await status(ingress, "203.0.113.20") for _ in range(3)] == [401, 401, 429]
        assert await status(ingress, "203.0.113.21") == 401  # another client behind the same proxy
        # An untrusted peer cannot pick its bucket with the header: every attempt is its own address's.
        assert [await status(direct, f"198.51.100.{n}") for n in range(3)] == [401, 401, 429]


async def test_per_key_limit_holds_per_process_while_redis_is_down(make_settings) -> None:
    settings = make_settings(redis_url="redis://127.0.0.1:1/0", api_rate_limit_requests=3)
    async with running_api(settings) as api:
        tenant = await api.tenant()
        statuses = [(await api.client.get("/v1/domains", headers=tenant.headers)).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]

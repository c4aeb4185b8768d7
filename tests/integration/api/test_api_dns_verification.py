"""Domain verification through DNS, against a real DNS server on loopback that the test starts (dnslib)."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from api_support import running_api, venv_bin
from dnslib import QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from taifa_api.adapters.dns import TxtResolver
from taifa_api.application import recheck, use_cases
from taifa_localstack import run_once


class ZoneResolver(BaseResolver):
    """Answers TXT queries from a dict that the test edits; NXDOMAIN otherwise."""

    def __init__(self) -> None:
        self.txt: dict[str, list[str]] = {}
        self.queries: list[str] = []
        self.lock = threading.Lock()

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        with self.lock:
            self.queries.append(name)
            values = self.txt.get(name)
        if values is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for value in values:
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(value), ttl=60))
        return reply


@pytest.fixture
def dns_server() -> Iterator[tuple[ZoneResolver, int]]:
    resolver = ZoneResolver()
    server = DNSServer(resolver, address="127.0.0.1", port=0, logger=DNSLogger(prefix=False, logf=lambda _: None))
    server.start_thread()
    try:
        yield resolver, server.server.server_address[1]
    finally:
        server.stop()
        server.server.server_close()


@pytest.fixture
async def dns_api(make_settings, dns_server):
    resolver, port = dns_server
    async with running_api(make_settings(api_dns_nameservers=f"127.0.0.1:{port}", api_dns_timeout_seconds=2)) as api:
        yield api, resolver


async def verify(api, tenant, domain_id: str):
    return await api.client.post(f"/v1/domains/{domain_id}/verify", headers=tenant.headers)


async def test_domain_becomes_verified_when_the_txt_record_is_published(dns_api) -> None:
    api, zone = dns_api
    tenant = await api.tenant()
    domain = await api.domain(tenant)
    record = domain["verification"]

    missing = await verify(api, tenant, domain["id"])
    assert missing.status_code == 200
    assert missing.json()["status"] == "pending"
    assert "_taifa." in missing.json()["status_reason"]

    zone.txt[record["name"]] = ["v=spf1 -all", "taifa-verification=wrong"]
    wrong = (await verify(api, tenant, domain["id"])).json()
    assert wrong["status"] == "pending" and wrong["status_reason"]

    zone.txt[record["name"]] = ["v=spf1 -all", record["value"]]
    verified = await verify(api, tenant, domain["id"])
    assert verified.status_code == 200
    body = verified.json()
    assert body["status"] == "verified" and body["status_reason"] is None and body["verified_at"].endswith("Z")
    assert record["name"] in zone.queries
    # Now a credential can be created for it.
    assert (await api.credential(tenant, domain["id"])).status_code == 201
    types = [
        r["event_type"]
        for r in await api.pool.fetch(
            "SELECT event_type FROM event_store WHERE stream_id = $1 ORDER BY position", uuid.UUID(domain["id"])
        )
    ]
    assert types == ["DomainRegistered", "DomainVerificationFailed", "DomainVerificationFailed", "DomainVerified"]


async def test_a_name_is_verified_by_one_account_at_a_time(dns_api) -> None:
    api, zone = dns_api
    alice, bob = await api.tenant(), await api.tenant()
    name = f"shared-{uuid.uuid4().hex[:6]}.example"
    alice_domain = await api.domain(alice, name)
    bob_domain = await api.domain(bob, name)
    zone.txt[f"_taifa.{name}"] = [alice_domain["verification"]["value"], bob_domain["verification"]["value"]]
    assert (await verify(api, alice, alice_domain["id"])).json()["status"] == "verified"
    taken = (await verify(api, bob, bob_domain["id"])).json()
    assert taken["status"] == "pending"
    assert "another account" in taken["status_reason"]
    assert (await api.credential(bob, bob_domain["id"])).json()["error"]["code"] == "domain_not_verified"


async def test_unreachable_nameserver_leaves_the_domain_pending_with_a_reason(make_settings) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        settings = make_settings(api_dns_nameservers=f"127.0.0.1:{port}", api_dns_timeout_seconds=0.5)
        async with running_api(settings) as api:
            tenant = await api.tenant()
            domain = await api.domain(tenant)
            body = (await verify(api, tenant, domain["id"])).json()
            assert body["status"] == "pending"
            assert "timed out" in body["status_reason"]


async def _types(api, stream_id: str) -> list[str]:
    rows = await api.pool.fetch(
        "SELECT event_type FROM event_store WHERE stream_id = $1 ORDER BY position", uuid.UUID(stream_id)
    )
    return [r["event_type"] for r in rows]


async def test_repeated_failed_verifies_append_one_event_an_hour_unless_the_reason_changes(dns_api) -> None:
    api, zone = dns_api
    tenant = await api.tenant()
    domain = await api.domain(tenant)
    for _ in range(5):
        body = (await verify(api, tenant, domain["id"])).json()
        assert body["status"] == "pending" and "no DNS record" in body["status_reason"]
    assert await _types(api, domain["id"]) == ["DomainRegistered", "DomainVerificationFailed"]

    zone.txt[domain["verification"]["name"]] = ["taifa-verification=wrong"]  # a new reason: recorded at once
    for _ in range(3):
        assert "does not hold" in (await verify(api, tenant, domain["id"])).json()["status_reason"]
    assert (await _types(api, domain["id"])).count("DomainVerificationFailed") == 2

    resolver = TxtResolver(api.settings.dns_nameservers, 2)
    later = datetime.now(UTC) + timedelta(minutes=61)
    for _ in range(3):
        await use_cases.verify_domain(
            api.uow, tenant.account_id, uuid.UUID(domain["id"]), resolver.lookup_txt, "t", clock=lambda: later
        )
    assert (await _types(api, domain["id"])).count("DomainVerificationFailed") == 3


async def _dns_verified(api, zone, tenant, name: str | None = None) -> dict:
    domain = await api.domain(tenant, name)
    zone.txt[domain["verification"]["name"]] = [domain["verification"]["value"]]
    assert (await verify(api, tenant, domain["id"])).json()["status"] == "verified"
    return domain


async def _recheck(api, at: datetime) -> recheck.RecheckReport:
    resolver = TxtResolver(api.settings.dns_nameservers, 2)
    return await recheck.recheck_domains(
        api.uow, resolver.lookup_txt, interval=timedelta(0), grace=timedelta(hours=72), clock=lambda: at
    )


async def _state(api, domain_id: str):
    return await api.pool.fetchrow(
        "SELECT status, verification_missing_since FROM domains WHERE domain_id = $1", uuid.UUID(domain_id)
    )


async def test_a_domain_whose_record_is_missing_for_72_hours_is_released_with_its_credentials(dns_api) -> None:
    api, zone = dns_api
    alice, bob = await api.tenant(), await api.tenant()
    name = f"lost-{uuid.uuid4().hex[:6]}.example"
    domain = await _dns_verified(api, zone, alice, name)
    credential = (await api.credential(alice, domain["id"])).json()
    now = datetime.now(UTC)

    await _recheck(api, now)
    assert dict(await _state(api, domain["id"])) == {"status": "verified", "verification_missing_since": None}

    del zone.txt[f"_taifa.{name}"]
    before = len(await _types(api, domain["id"]))
    day1 = now + timedelta(days=1)
    await _recheck(api, day1)
    assert (await _state(api, domain["id"]))["verification_missing_since"] == day1
    await _recheck(api, now + timedelta(days=3))  # 48 h missing: still held, and no event per check
    assert (await _state(api, domain["id"]))["status"] == "verified"
    assert len(await _types(api, domain["id"])) == before

    report = await _recheck(api, day1 + timedelta(hours=72))
    assert uuid.UUID(domain["id"]) in report.released
    assert (await _state(api, domain["id"]))["status"] == "released"
    assert (await _types(api, domain["id"]))[-1] == "DomainReleased"
    released = await api.pool.fetchval(
        "SELECT data->>'reason' FROM event_store WHERE stream_id = $1 AND event_type = 'DomainReleased'",
        uuid.UUID(domain["id"]),
    )
    assert released == "verification_lost"
    assert await _types(api, credential["id"]) == ["CredentialCreated", "CredentialDeactivated"]
    # Another account may now verify the name through DNS.
    assert (await _dns_verified(api, zone, bob, name))["name"] == name


async def test_a_record_back_within_the_grace_period_clears_the_clock(dns_api) -> None:
    api, zone = dns_api
    tenant = await api.tenant()
    domain = await _dns_verified(api, zone, tenant)
    record = domain["verification"]["name"]
    value = zone.txt.pop(record)
    now = datetime.now(UTC)
    await _recheck(api, now)
    assert (await _state(api, domain["id"]))["verification_missing_since"] == now
    zone.txt[record] = value
    await _recheck(api, now + timedelta(days=2))
    del zone.txt[record]
    await _recheck(api, now + timedelta(days=4))  # missing again: a new clock, not the old one
    state = await _state(api, domain["id"])
    assert state["status"] == "verified" and state["verification_missing_since"] == now + timedelta(days=4)


async def test_admin_domain_recheck_releases_a_domain_missing_past_the_grace_period(dns_api) -> None:
    api, zone = dns_api
    tenant = await api.tenant()
    domain = await _dns_verified(api, zone, tenant)
    del zone.txt[domain["verification"]["name"]]
    env = {
        "TAIFA_DATABASE_URL": api.settings.database_url,
        "TAIFA_API_DNS_NAMESERVERS": api.settings.api_dns_nameservers,
        "TAIFA_API_DOMAIN_RECHECK_INTERVAL_SECONDS": "0",
        "TAIFA_API_DOMAIN_RECHECK_GRACE_SECONDS": "0",
    }
    command = [venv_bin("taifa-admin"), "domain", "recheck"]
    first = json.loads(await asyncio.to_thread(run_once, command, env=env))
    assert first["missing"] >= 1 and domain["id"] not in first["released"]
    assert (await _state(api, domain["id"]))["verification_missing_since"] is not None
    second = json.loads(await asyncio.to_thread(run_once, command, env=env))
    assert domain["id"] in second["released"]
    assert (await _state(api, domain["id"]))["status"] == "released"


async def test_a_domain_an_operator_verified_without_dns_is_never_released_by_the_recheck(dns_api) -> None:
    # `taifa-admin domain verify --force` verifies without DNS: the TXT record was never needed, and the re-check
    # released the domain (and deactivated its credential) three days later.
    api, zone = dns_api
    tenant = await api.tenant()
    forced = await api.verified_domain(tenant)  # use_cases.force_verify_domain, as the CLI does
    credential = (await api.credential(tenant, forced["id"])).json()
    dns_domain = await _dns_verified(api, zone, tenant)
    del zone.txt[dns_domain["verification"]["name"]]
    now = datetime.now(UTC)
    for day in range(6):
        await _recheck(api, now + timedelta(days=day))
    assert (await _state(api, forced["id"]))["status"] == "verified"
    assert await _types(api, credential["id"]) == ["CredentialCreated"]
    assert (await _state(api, dns_domain["id"]))["status"] == "released"  # the one verified through DNS
    method = await api.pool.fetchval(
        "SELECT verification_method FROM domains WHERE domain_id = $1", uuid.UUID(forced["id"])
    )
    assert method == "operator"

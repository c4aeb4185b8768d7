"""Domain verification through DNS, against a real DNS server on loopback that the test starts (dnslib)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from api_support import running_api
from dnslib import QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer


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

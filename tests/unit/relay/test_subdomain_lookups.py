"""The submission's use of the domain-owner lookups, with a fake of our own DomainOwnerLookup port: no lookup for
the credential's own domain, refusal for another account's subdomain, and a temporary reply (never a pass)
when the owners cannot be read."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from taifa_relay.application.ports import CacheUnavailable
from taifa_relay.application.sessions import RecentChecks, SessionRegistry, SessionState
from taifa_relay.application.submission import Submission
from taifa_relay.domain import policy, replies
from taifa_relay.domain.limits import AdmissionLimits, AuthFailureLimits

from tests.unit.relay.relay_fakes import FakeUsage

MINE = "11111111-1111-4111-8111-111111111111"
THEIRS = "22222222-2222-4222-8222-222222222222"


class FakeOwners:
    def __init__(self, owners: dict[str, str], *, down: bool = False) -> None:
        self.owners_by_name = owners
        self.down = down
        self.asked: list[list[str]] = []

    async def owners(self, names: list[str]) -> list[str | None]:
        self.asked.append(names)
        if self.down:
            raise CacheUnavailable("ConnectionError")
        return [self.owners_by_name.get(name) for name in names]


def _submission(owners: FakeOwners) -> Submission:
    return Submission(
        auth_cache=cast(Any, None),  # neither is reached by MAIL
        upstream=cast(Any, None),
        domain_owners=owners,
        sessions=SessionRegistry(AdmissionLimits(10, 10, 10), RecentChecks(0)),
        hostname="relay.test",
        max_recipients=10,
        auth_limits=AuthFailureLimits(per_connection=3, per_address_username=10, per_address=10),
        max_own_received_headers=3,
        sending=cast(Any, None),  # not reached: no limits in these sessions
        usage_recorder=FakeUsage(),
    )


def _mail(owners: FakeOwners, address: str) -> str:
    async def run() -> str:
        state = SessionState("192.0.2.7")
        state.domain, state.account_id = "own.example", MINE
        return (await _submission(owners).mail_from(state, address)).reply

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("address", "reply", "asked"),
    [
        ("app@own.example", "250 2.1.0 OK", []),
        ("app@news.own.example", "250 2.1.0 OK", [["news.own.example"]]),
        ("app@mine.own.example", "250 2.1.0 OK", [["mine.own.example"]]),
        ("app@mail.own.example", replies.SENDER_NOT_ALLOWED, [["mail.own.example"]]),
        ("app@a.mail.own.example", replies.SENDER_NOT_ALLOWED, [["a.mail.own.example", "mail.own.example"]]),
    ],
)
def test_mail_from_looks_up_owners_only_for_subdomains(address: str, reply: str, asked: list[list[str]]) -> None:
    owners = FakeOwners({"mail.own.example": THEIRS, "mine.own.example": MINE})
    assert _mail(owners, address) == reply
    assert owners.asked == asked


def test_owners_unreadable_is_a_temporary_refusal_never_a_pass() -> None:
    reply = _mail(FakeOwners({}, down=True), "app@mail.own.example")
    assert reply == replies.SENDER_CHECK_UNAVAILABLE and reply.startswith("451 4.3.0 ")
    assert _mail(FakeOwners({}, down=True), "app@own.example") == "250 2.1.0 OK"


@pytest.mark.parametrize(
    ("ip", "group"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
    ],
)
def test_every_per_client_limit_counts_an_ipv6_64_as_one_client(ip: str, group: str) -> None:
    assert policy.address_group(ip) == group

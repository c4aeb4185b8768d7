"""The relay's submission policy, without sockets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from taifa_relay.domain import policy, replies
from taifa_relay.domain.replies import upstream_failure_reply


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("app@example.com", True),
        ("app@mail.example.com", True),
        ("APP@EXAMPLE.COM.", True),
        ('"odd local"@example.com', True),
        ("app@example.com.evil.net", False),
        ("app@evilexample.com", False),
        ("app@other.org", False),
        ("app%evil.net@example.com", False),
        ("evil.net!app@example.com", False),
        ("app@[127.0.0.1]", False),
        ("example.com", False),
        ("@example.com", False),
        ("app@-bad-.example.com", False),
        ('"ceo@bank.example\r"@example.com', False),  # the upstream client's parser stops at the CR
        ('"a\tb"@example.com', False),
        ("app\x00@example.com", False),
        ("app\x7f@example.com", False),
    ],
)
def test_sender_allowed_only_in_the_credential_domain_and_subdomains(address: str, allowed: bool) -> None:
    assert policy.sender_allowed(address, "example.com") is allowed


def test_header_values_unfold_and_ignore_the_body() -> None:
    headers = policy.header_block(
        b"Subject: a\r\nFROM: App\r\n <app@example.com>\r\nTo: x@y\r\n\r\nFrom: body@evil\r\n"
    )
    assert policy.header_values(headers, "from") == ["App <app@example.com>"]


@pytest.mark.parametrize(
    ("header", "refusal"),
    [
        (b"From: app@example.com\r\n", None),
        (b'From: "boss@bank.com" <app@example.com>\r\n', None),
        (b"From: app@example.com, ceo@bank.com\r\n", replies.HEADER_FROM_MISSING),  # one address only
        (b"From: ceo@bank.com\r\n", replies.HEADER_FROM_NOT_ALLOWED),
        (b"From: undisclosed\r\n", replies.HEADER_FROM_MISSING),
        (b"Subject: no from\r\n", replies.HEADER_FROM_MISSING),
        (b"From: a@example.com\r\nFrom: b@example.com\r\n", replies.HEADER_FROM_MISSING),
    ],
)
def test_header_from_alignment(header: bytes, refusal: str | None) -> None:
    headers = policy.header_block(header + b"\r\nbody")
    assert policy.check_header_identities(headers, "example.com").refusal == refusal


def test_received_header_is_one_header_whatever_the_helo() -> None:
    header = policy.received_header(
        helo="x\r\nBcc: victim@a",
        client_ip="192.0.2.1",
        hostname="relay.test",
        tls_version="TLSv1.3",
        now=datetime(2026, 1, 1, tzinfo=UTC),
        queue_id="abc",
    )
    lines = header.split(b"\r\n")
    assert lines[0].startswith(b"Received: from x??Bcc:?victim?a ([192.0.2.1])")
    assert all(line.startswith(b"\t") for line in lines[1:-1]) and lines[-1] == b""
    assert policy.own_received_count(header + b"\r\n", "relay.test") == 1
    assert policy.own_received_count(header + b"\r\n", "other.test") == 0


@pytest.mark.parametrize(
    ("data", "bare"),
    [(b"a\r\nb\r\n", False), (b"a\nb\r\n", True), (b"a\rb\r\n", True), (b"a\r\n\n", True), (b"", False)],
)
def test_bare_newline_detection(data: bytes, bare: bool) -> None:
    assert policy.has_bare_newline(data) is bare


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:db8::ffff:1", "2001:db8::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("local", "local"),
    ],
)
def test_throttle_key_groups_ipv6_by_64(ip: str, key: str) -> None:
    assert policy.throttle_key(ip) == key


@pytest.mark.parametrize(
    ("arg", "null"),
    [("FROM:<>", True), ("from: <> SIZE=1", True), ("FROM:<a@b>", False), (None, False), ("TO:<>", False)],
)
def test_null_sender(arg: str | None, null: bool) -> None:
    assert policy.is_null_sender(arg) is null


@pytest.mark.parametrize(
    ("code", "text", "reply"),
    [
        (0, "ConnectionRefusedError", replies.UPSTREAM_UNAVAILABLE),
        (421, "bye", replies.UPSTREAM_TEMPORARY),
        (452, "full", replies.UPSTREAM_TEMPORARY),
        (554, "5.7.1 spam\r\nX-Evil: 1", "554 5.7.1 spam X-Evil: 1"),
    ],
)
def test_upstream_failures_map_to_451_or_pass_5xx_through(code: int, text: str, reply: str) -> None:
    assert upstream_failure_reply(code, text) == reply


def test_every_reply_constant_has_an_enhanced_status_code() -> None:
    import re

    for name in dir(replies):
        value = getattr(replies, name)
        if name.isupper() and isinstance(value, str):
            assert re.match(r"^[2-5]\d\d [2-5]\.\d{1,3}\.\d{1,3} ", value) or name == "DATA_START", name


def test_header_addresses_memo_gives_the_parse_every_time_and_stays_bounded() -> None:
    # The memo of parsed From values (issue 18) is exact: a repeated value gives what a fresh parse gives.
    for _ in range(2):
        assert policy.header_addresses(["App <app@example.com>, b@example.com"]) == ["app@example.com", "b@example.com"]
        assert policy.header_addresses(["undisclosed-recipients:;"]) is None
    for n in range(policy._MAX_ADDRESSES + 10):
        policy.header_addresses([f"a{n}@example.com"])
    assert len(policy._ADDRESSES) <= policy._MAX_ADDRESSES


def test_aiosmtpds_address_parse_memo_answers_as_aiosmtpd_and_stays_bounded() -> None:
    from aiosmtpd.smtp import SMTP
    from taifa_relay.entrypoints import session_state

    parse = SMTP(handler=None)._getaddr  # type: ignore[arg-type]
    for arg in ("<a@example.com> SIZE=10", "<a@example.com>", "b@example.com", "<>", "<a b@c>", "", "<x@[1.2.3.4]>"):
        for _ in range(2):
            assert session_state.memoized_getaddr(parse, 0, arg) == parse(arg)
    strict_server = SMTP(handler=None)  # type: ignore[arg-type]
    strict_server.local_part_limit = 1  # a class attribute of aiosmtpd's SMTP, not a constructor argument
    strict = strict_server._getaddr
    assert session_state.memoized_getaddr(strict, 1, "<ab@example.com>") == (None, None)  # the limit is in the key
    assert session_state.memoized_getaddr(parse, 0, "<ab@example.com>") == ("ab@example.com", "")
    for n in range(session_state._MAX_ADDRESSES + 10):
        session_state.memoized_getaddr(parse, 0, f"<a{n}@example.com>")
    assert len(session_state._ADDRESSES) <= session_state._MAX_ADDRESSES

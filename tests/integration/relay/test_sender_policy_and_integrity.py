"""Cases B1-B9 of docs/testing.md: no open relay, sender policy, message integrity (smuggling), forwarding upstream."""

from __future__ import annotations

import smtplib
from typing import Any

import pytest
import trustme
from taifa_localstack import free_port

from tests.integration.relay.fake_upstream import server_context
from tests.integration.relay.support import (
    Certs,
    Client,
    Credentials,
    Raw,
    Sink,
    login_raw,
    message,
)

RELAY_TESTS = [
    "MAIL FROM:<spammer@evil.example>",
    "RCPT TO:<victim@dest.example>",
    "RCPT TO:<victim%dest.example@relay.test>",
    "RCPT TO:<dest.example!victim@relay.test>",
    'RCPT TO:<"victim@dest.example"@relay.test>',
    "RCPT TO:<@relay.test:victim@dest.example>",
    "DATA",
]


@pytest.mark.parametrize("port", ["submission", "smtps"])
def test_b1_nothing_is_relayed_without_auth(client: Client, sink: Sink, port: str) -> None:
    before = sink.count()
    with client.tls(port) as smtp:
        for command in RELAY_TESTS:
            assert smtp.docmd(command)[0] == 530, command
    with client.plain() as smtp:
        smtp.ehlo("client.test")
        for command in RELAY_TESTS:
            assert smtp.docmd(command)[0] == 530, command
    assert sink.count() == before


def test_b2_sender_must_be_in_the_credential_domain_or_a_subdomain(client: Client, credentials: Credentials) -> None:
    mine = credentials.create()
    other_tenant = credentials.create()
    with client.login(mine) as smtp:
        for sender, code in [
            (f"app@{mine.domain}", 250),
            (f"app@mail.{mine.domain}", 250),
            (f"APP@{mine.domain.upper()}", 250),
            (f"app@{other_tenant.domain}", 553),
            ("app@unverified.example", 553),
            (f"app@evil{mine.domain}", 553),
            (f"app@{mine.domain}.evil.example", 553),
            (f"app%evil.example@{mine.domain}", 553),
            (f"@{mine.domain}:app@evil.example", 553),
            (f"@relay.example:app@{mine.domain}", 553),  # a source route is refused, not stripped
        ]:
            reply = smtp.docmd(f"MAIL FROM:<{sender}>")
            assert reply[0] == code, (sender, reply)
            smtp.rset()


@pytest.mark.parametrize(
    ("from_header", "allowed"),
    [
        ("App <app@{own}>", True),
        ('"ceo@bank.example" <app@{own}>', True),
        ("app@sub.{own}", True),
        ("ceo@bank.example", False),
        ("App <app@{own}>, ceo@bank.example", False),
        ("<ceo@bank.example>", False),
        ("ceo@{own}.bank.example", False),
        ("ceo@bank.example x.{own}", False),  # a domain split by CFWS: RFC 5322 reads ceo@bank.example
        ("CEO <ceo@bank.example\r\n x.{own}>", False),
        ("ceo@bank.example()x.{own}", False),
        ("undisclosed", None),
    ],
)
def test_b3_header_from_must_be_aligned(
    client: Client, credentials: Credentials, sink: Sink, from_header: str, allowed: bool | None
) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    before = sink.count()
    with client.login(cred) as smtp:
        smtp.mail(sender)
        smtp.rcpt("a@dest.example")
        code, text = smtp.data(message(sender, from_header=from_header.format(own=cred.domain)))
    if allowed:
        assert code == 250
        assert sink.count() == before + 1
    else:
        assert code == 550 and text.startswith(b"5.7.1")
        assert sink.count() == before


def test_b3_second_from_header_is_refused(client: Client, credentials: Credentials) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    with client.login(cred) as smtp:
        smtp.mail(sender)
        smtp.rcpt("a@dest.example")
        code, _ = smtp.data(b"From: ceo@bank.example\r\n" + message(sender))
    assert code == 550


def test_b4_null_sender_is_refused(client: Client, credentials: Credentials) -> None:
    cred = credentials.create()
    with client.login(cred, "smtps") as smtp:
        assert smtp.docmd("MAIL FROM:<>") == (553, b"5.7.1 Null sender not allowed for submission")
        assert smtp.docmd("MAIL FROM:<> SIZE=10")[0] == 553


FAKE_ENDS = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n", b"\n.\r"]


@pytest.mark.parametrize("port", ["submission", "smtps"])
@pytest.mark.parametrize("fake_end", FAKE_ENDS, ids=[repr(v) for v in FAKE_ENDS])
def test_b5_b7_fake_end_of_data_smuggles_nothing(
    client: Client, credentials: Credentials, sink: Sink, port: str, fake_end: bytes
) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    before = sink.count()
    raw = Raw(client.port(port), implicit_tls=port == "smtps", certs=client.certs)
    login_raw(raw, cred, implicit_tls=port == "smtps")
    assert raw.command(f"MAIL FROM:<{sender}>").startswith("250")
    assert raw.command("RCPT TO:<a@dest.example>").startswith("250")
    assert raw.command("DATA").startswith("354")
    raw.send(
        f"From: {sender}\r\nSubject: outer\r\n\r\nbody".encode()
        + fake_end
        + b"MAIL FROM:<spoof@bank.example>\r\nRCPT TO:<victim@dest.example>\r\nDATA\r\n"
        + b"From: spoof@bank.example\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n"
    )
    assert raw.reply() == "550 5.6.0 Bare CR or LF not allowed in message data"
    # Nothing was left over to be read as a command: the next reply is for our NOOP.
    assert raw.command("NOOP").startswith("250")
    raw.close()
    assert sink.count() == before


def test_b5_pipelined_commands_after_the_real_end_of_data_are_commands(
    client: Client, credentials: Credentials, sink: Sink
) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    before = sink.count()
    raw = Raw(client.relay.submission_port, certs=client.certs)
    login_raw(raw, cred)
    assert raw.command(f"MAIL FROM:<{sender}>").startswith("250")
    assert raw.command("RCPT TO:<a@dest.example>").startswith("250")
    assert raw.command("DATA").startswith("354")
    raw.send(f"From: {sender}\r\n\r\nfirst\r\n.\r\n".encode() + b"MAIL FROM:<spoof@bank.example>\r\nNOOP\r\n")
    assert raw.reply().startswith("250 2.0.0")
    assert raw.reply() == "553 5.7.1 Sender address rejected: not owned by user"
    assert raw.reply().startswith("250")
    raw.close()
    assert sink.count() == before + 1


@pytest.mark.parametrize("body", [b"line one\nline two\r\n", b"cr\ralone\r\n", b"end with lf\n"])
def test_b6_bare_newlines_are_refused_and_nothing_bare_reaches_upstream(
    client: Client, credentials: Credentials, sink: Sink, body: bytes
) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    before = sink.count()
    raw = Raw(client.relay.submission_port, certs=client.certs)
    login_raw(raw, cred)
    raw.command(f"MAIL FROM:<{sender}>")
    raw.command("RCPT TO:<a@dest.example>")
    raw.command("DATA")
    assert raw.command(f"From: {sender}\r\n\r\n".encode() + body + b"\r\n.\r\n").startswith("550 5.6.0")
    raw.close()
    assert sink.count() == before


def test_b7_dot_stuffing_round_trips_and_upstream_sees_only_crlf(
    client: Client, credentials: Credentials, sink: Sink
) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    body = "normal\r\n.\r\n..two dots\r\n.leading dot\r\n...\r\nend\r\n"
    original = message(sender, subject="dots", body=body)
    with client.login(cred) as smtp:
        assert smtp.sendmail(sender, ["a@dest.example"], original) == {}
    stored = [m for m in sink.messages() if body.encode() in m]
    assert len(stored) == 1
    content = stored[0]
    assert content.endswith(original)
    assert content.count(b"\r") == content.count(b"\r\n") == content.count(b"\n")


@pytest.fixture
def upstream_certs(certs: Certs) -> Certs:
    return certs


def _send_one(relay: Any, certs: Certs, credentials: Credentials) -> tuple[int, bytes]:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    with Client(relay, certs).login(cred) as smtp:
        smtp.mail(sender)
        smtp.rcpt("a@dest.example")
        return smtp.data(message(sender))


def test_b8_data_injected_after_upstream_starttls_is_discarded(
    scripted: Any, make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    upstream = scripted(tls=server_context(certs.ca), inject_after_starttls=b"250-INJECTED\r\n250 PIPELINING\r\n")
    relay = make_relay(relay_upstream_port=upstream.port)
    code, _ = _send_one(relay, certs, credentials)
    assert code == 250
    tls_at = upstream.commands.index("<tls>")
    assert upstream.commands[tls_at + 1].startswith("EHLO")
    assert [c.split(":")[0] for c in upstream.commands[tls_at + 2 : tls_at + 5]] == ["MAIL FROM", "RCPT TO", "DATA"]
    assert len(upstream.messages) == 1


def test_b8_upstream_certificate_is_verified(
    scripted: Any, make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    stranger = trustme.CA(key_type=trustme.KeyType.ECDSA)
    upstream = scripted(tls=server_context(stranger))
    relay = make_relay(relay_upstream_port=upstream.port)
    assert _send_one(relay, certs, credentials) == (451, b"4.4.1 Upstream temporarily unavailable, try again later")
    assert upstream.messages == []


def test_upstream_without_starttls_gets_nothing_when_tls_is_required(
    scripted: Any, make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    upstream = scripted(tls=None)
    relay = make_relay(relay_upstream_port=upstream.port)  # TAIFA_RELAY_UPSTREAM_TLS defaults to required
    assert _send_one(relay, certs, credentials) == (451, b"4.4.1 Upstream temporarily unavailable, try again later")
    assert upstream.messages == []
    assert not any(c.startswith(("MAIL", "RCPT", "DATA")) for c in upstream.commands), upstream.commands


def test_required_tls_verifies_the_upstream_even_when_verification_is_switched_off(
    scripted: Any, make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    upstream = scripted(tls=server_context(trustme.CA(key_type=trustme.KeyType.ECDSA)))
    relay = make_relay(relay_upstream_port=upstream.port, relay_upstream_verify=False)
    assert _send_one(relay, certs, credentials)[0] == 451
    assert upstream.messages == []


@pytest.mark.parametrize("mode", ["opportunistic", "none"])
def test_upstream_without_starttls_is_used_in_clear_only_when_configured(
    scripted: Any, make_relay: Any, certs: Certs, credentials: Credentials, mode: str
) -> None:
    upstream = scripted(tls=None)
    relay = make_relay(relay_upstream_port=upstream.port, relay_upstream_tls=mode)
    assert _send_one(relay, certs, credentials)[0] == 250
    assert len(upstream.messages) == 1
    assert "STARTTLS" not in upstream.commands


def test_tls_none_never_starts_tls_even_when_offered(
    scripted: Any, make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    upstream = scripted(tls=server_context(certs.ca))
    relay = make_relay(relay_upstream_port=upstream.port, relay_upstream_tls="none")
    assert _send_one(relay, certs, credentials)[0] == 250
    assert "STARTTLS" not in upstream.commands and len(upstream.messages) == 1


def test_upstream_unreachable_is_451_4_4_1(make_relay: Any, certs: Certs, credentials: Credentials) -> None:
    relay = make_relay(relay_upstream_port=free_port())
    code, text = _send_one(relay, certs, credentials)
    assert code == 451 and text.startswith(b"4.4.1")


@pytest.mark.parametrize(
    ("replies", "expected"),
    [
        (
            {"END": "452 4.3.1 Insufficient system storage"},
            (451, b"4.4.0 Upstream temporarily failed, try again later"),
        ),
        # A 421 at MAIL closes the connection (a reused one is retried fresh): the upstream is unavailable.
        ({"MAIL": "421 4.3.2 Shutting down"}, (451, b"4.4.1 Upstream temporarily unavailable, try again later")),
        ({"END": "554 5.7.1 Message rejected as spam"}, (554, b"5.7.1 Message rejected as spam")),
        ({"RCPT": "550 5.1.1 No such user"}, (550, b"5.1.1 No such user")),
    ],
)
def test_upstream_4xx_becomes_451_and_5xx_is_passed_through(
    scripted: Any,
    make_relay: Any,
    certs: Certs,
    credentials: Credentials,
    replies: dict[str, str],
    expected: tuple[int, bytes],
) -> None:
    upstream = scripted(tls=server_context(certs.ca), replies=replies)
    relay = make_relay(relay_upstream_port=upstream.port)
    assert _send_one(relay, certs, credentials) == expected
    if "END" not in replies:
        assert upstream.messages == []


def test_one_refused_recipient_relays_nothing_so_a_retry_cannot_duplicate(
    scripted: Any, make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    upstream = scripted(tls=server_context(certs.ca), replies={"RCPT": "250 OK"})
    relay = make_relay(relay_upstream_port=upstream.port)
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    with Client(relay, certs).login(cred) as smtp:
        upstream.replies["RCPT"] = "250 OK"
        assert smtp.sendmail(sender, ["a@dest.example"], message(sender)) == {}
        upstream.replies["RCPT"] = "450 4.2.1 Mailbox busy"
        smtp.mail(sender)
        smtp.rcpt("a@dest.example")
        smtp.rcpt("b@dest.example")
        assert smtp.data(message(sender))[0] == 451
    assert len(upstream.messages) == 1
    assert "RSET" in upstream.commands


def test_mail_loop_is_refused(client: Client, credentials: Credentials, sink: Sink) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    own = "Received: from x ([10.0.0.1])\r\n\tby relay.test (Taifa relay) with ESMTPSA id 1;\r\n\tMon, 1 Jan 2026\r\n"
    with client.login(cred) as smtp:
        smtp.mail(sender)
        smtp.rcpt("a@dest.example")
        assert smtp.data((own * 2).encode() + message(sender))[0] == 250
        smtp.mail(sender)
        smtp.rcpt("a@dest.example")
        assert smtp.data((own * 3).encode() + message(sender)) == (550, b"5.4.6 Mail loop detected")


def test_b9_helo_name_cannot_inject_headers(client: Client, credentials: Credentials, sink: Sink) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    raw = Raw(client.relay.submission_port, certs=client.certs)
    assert raw.reply().startswith("220")
    raw.command("EHLO x")
    raw.command("STARTTLS")
    raw.starttls()
    # A control character in the name is refused before anything reads it (no RFC 5321 command holds one)...
    assert raw.command("EHLO evil>(X-Injected:\tyes)") == "500 5.5.2 Error: bad syntax"
    # ...and what a name may hold never reaches a header as anything but one `Received:` line.
    raw.command("EHLO evil>(X-Injected: yes)")
    from tests.integration.relay.support import plain_auth_arg

    assert raw.command(f"AUTH PLAIN {plain_auth_arg(cred.username, cred.password)}").startswith("235")
    raw.command(f"MAIL FROM:<{sender}>")
    raw.command("RCPT TO:<a@dest.example>")
    raw.command("DATA")
    assert raw.command(message(sender, subject="helo-injection") + b".\r\n").startswith("250")
    raw.close()
    stored = next(m for m in sink.messages() if b"helo-injection" in m)
    received = stored.split(b"Received: ", 1)[1].split(b"\r\nFrom:", 1)[0]
    assert b"\nX-Injected" not in stored
    assert b"from evil??X-Injected:?yes? ([127.0.0.1])\r\n\tby relay.test" in received  # only [A-Za-z0-9.-[]:_] kept


def test_smtplib_sendmail_failure_raises_for_all_refused(client: Client, credentials: Credentials) -> None:
    cred = credentials.create()
    with client.login(cred) as smtp, pytest.raises(smtplib.SMTPSenderRefused):
        smtp.sendmail("ceo@bank.example", ["a@dest.example"], b"x")

"""Cases A1-A6 of docs/testing.md: SMTP transport, STARTTLS and the AUTH exchange (A7-A13, what AUTH refuses and when:
test_auth_refusals.py; A14, TLS versions and ciphers, and the session tickets: test_tls_versions_and_tickets.py)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.integration.relay.support import Client, Credentials, Raw, auth, metric, plain_auth_arg


def test_a1_auth_is_not_advertised_before_tls_only_starttls(client: Client) -> None:
    with client.plain() as smtp:
        code, _text = smtp.ehlo("client.test")
        assert code == 250
        assert smtp.has_extn("starttls")
        assert not smtp.has_extn("auth")
        smtp.starttls(context=client.certs.client_context())
        smtp.ehlo("client.test")
        assert smtp.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
        assert not smtp.has_extn("starttls")


def test_a2_auth_before_tls_is_refused_without_a_lookup_and_the_secret_is_never_logged(
    client: Client, credentials: Credentials, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cred = credentials.create()
    lookups = metric("taifa_relay_auth_lookups_total")
    raw = Raw(client.relay.submission_port)
    assert raw.reply().startswith("220")
    raw.command("EHLO raw.test")
    secret_arg = plain_auth_arg(cred.username, cred.password)
    assert raw.command(f"AUTH PLAIN {secret_arg}") == "530 5.7.0 Must issue a STARTTLS command first"
    # AUTH LOGIN's continuation line is treated as a (refused) command, never read as a credential.
    assert raw.command("AUTH LOGIN").startswith("530 5.7.0")
    assert raw.command(plain_auth_arg(cred.username, cred.password)).startswith("530 5.7.0")
    assert raw.command("QUIT").startswith("221")
    raw.close()
    assert metric("taifa_relay_auth_lookups_total") == lookups
    assert cred.password not in caplog.text and secret_arg not in caplog.text


@pytest.mark.parametrize(
    "command", ["MAIL FROM:<a@b.example>", "RCPT TO:<a@b.example>", "DATA", "VRFY root", "RSET", "HELP", "EXPN list"]
)
def test_a3_every_command_except_ehlo_helo_noop_quit_starttls_is_530_before_tls(client: Client, command: str) -> None:
    with client.plain() as smtp:
        assert smtp.docmd("HELO", "client.test")[0] == 250
        assert smtp.docmd("EHLO", "client.test")[0] == 250
        assert smtp.docmd("NOOP")[0] == 250
        assert smtp.docmd(command) == (530, b"5.7.0 Must issue a STARTTLS command first")
        assert smtp.docmd("HELO", "again.test")[0] == 250  # still allowed after a refusal
        assert smtp.docmd("QUIT")[0] == 221


def test_a3_helo_before_tls_does_not_open_anything_and_starttls_still_works(client: Client) -> None:
    with client.plain() as smtp:
        assert smtp.docmd("HELO", "client.test")[0] == 250
        assert smtp.docmd("MAIL FROM:<a@b.example>")[0] == 530
        assert smtp.docmd("AUTH PLAIN AGFAYg==")[0] == 530
        smtp.ehlo("client.test")
        smtp.starttls(context=client.certs.client_context())
        assert smtp.ehlo("client.test")[0] == 250
        assert smtp.has_extn("auth")


def test_a4_a5_commands_pipelined_behind_starttls_are_discarded_and_state_is_reset(
    client: Client, credentials: Credentials
) -> None:
    cred = credentials.create()
    raw = Raw(client.relay.submission_port, certs=client.certs)
    assert raw.reply().startswith("220")
    raw.command("EHLO raw.test")
    raw.send(
        b"STARTTLS\r\n"
        + f"AUTH PLAIN {plain_auth_arg(cred.username, cred.password)}\r\n".encode()
        + f"MAIL FROM:<x@{cred.domain}>\r\n".encode()
    )
    assert raw.line().startswith(b"220")
    raw.buffer = b""  # whatever else arrived in clear is the attacker's, not the server's
    raw.starttls()
    # No injected command ran: no EHLO is remembered, no AUTH happened.
    assert raw.command(f"MAIL FROM:<x@{cred.domain}>").startswith("503")
    assert raw.command("EHLO raw.test").startswith("250")
    assert raw.command(f"MAIL FROM:<x@{cred.domain}>") == "530 5.7.0 Authentication required"
    raw.close()


@pytest.mark.parametrize("port", ["submission", "smtps"])
def test_a6_auth_mechanisms_errors_and_reauth(client: Client, credentials: Credentials, port: str) -> None:
    cred = credentials.create()
    with client.tls(port) as smtp:
        assert smtp.docmd("AUTH CRAM-MD5") == (504, b"5.5.4 Unrecognized authentication type")
        assert smtp.docmd("AUTH PLAIN not-base64!") == (501, b"5.5.2 Can't decode base64")
        assert auth(smtp, "LOGIN", cred.username, cred.password) == (235, b"2.7.0 Authentication successful")
        assert smtp.docmd("AUTH PLAIN " + plain_auth_arg(cred.username, cred.password))[0] == 503


def test_a6_auth_plain_with_another_users_authorization_identity_is_refused(
    client: Client, credentials: Credentials
) -> None:
    # RFC 4616 §2: an authzid the login may not act as fails; the relay lets nobody act as another user.
    import base64

    def plain(authzid: str, cred: Any) -> str:
        return "PLAIN " + base64.b64encode(f"{authzid}\0{cred.username}\0{cred.password}".encode()).decode()

    mine, other = credentials.create(), credentials.create()
    with client.tls() as smtp:
        assert smtp.docmd("AUTH", plain(other.username, mine)) == (535, b"5.7.8 Authentication credentials invalid")
        assert smtp.docmd("AUTH", plain(mine.username, mine)) == (235, b"2.7.0 Authentication successful")


@pytest.mark.parametrize(
    ("answer", "reply"),
    [
        (b"A" * 200_000, "500 5.5.2 Line too long"),  # aiosmtpd's readline raised: a traceback, 451, then commands
        (b"*", "501 5.7.0 Auth aborted"),  # RFC 4954 cancel: one reply (a 535 used to follow it)
        (b"not base64!", "501 5.5.2 Can't decode base64"),
    ],
    ids=["over-long", "cancel", "bad-base64"],
)
def test_a6_an_auth_continuation_line_that_cannot_be_used_gets_one_reply_and_the_session_goes_on(
    client: Client, answer: bytes, reply: str
) -> None:
    raw = Raw(client.relay.submission_port, certs=client.certs)
    assert raw.reply().startswith("220")
    raw.command("EHLO a.test")
    raw.command("STARTTLS")
    raw.starttls()
    raw.command("EHLO a.test")
    assert raw.command("AUTH LOGIN").startswith("334")
    raw.send(answer + b"\r\nNOOP\r\n")
    assert [raw.reply(), raw.reply()] == [reply, "250 OK"]
    raw.close()


def test_a6_auth_login_uses_two_334_prompts(client: Client, credentials: Credentials) -> None:
    import base64

    cred = credentials.create()
    raw = Raw(client.relay.submission_port, certs=client.certs)
    assert raw.reply().startswith("220")
    raw.command("EHLO raw.test")
    raw.command("STARTTLS")
    raw.starttls()
    raw.command("EHLO raw.test")
    assert raw.command("AUTH LOGIN") == "334 " + base64.b64encode(b"User Name\x00").decode()
    assert raw.command(base64.b64encode(cred.username.encode()).decode()).startswith("334 ")
    assert raw.command(base64.b64encode(cred.password.encode()).decode()) == "235 2.7.0 Authentication successful"
    raw.close()

"""The reply table of docs/api.md ("Reply codes"), row by row, through Python smtplib on both ports with AUTH
PLAIN and LOGIN."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.relay.support import (
    Client,
    Credentials,
    RelayThread,
    Sink,
    auth,
    message,
    relay_settings,
)

PORTS = ["submission", "smtps"]
MECHANISMS = ["PLAIN", "LOGIN"]
matrix = pytest.mark.parametrize(("port", "mechanism"), [(p, m) for p in PORTS for m in MECHANISMS])


@pytest.fixture(scope="module")
def limited_relay(certs: Any, sink: Sink, redis_server: Any) -> Iterator[RelayThread]:
    url = str(redis_server.url).rsplit("/", 1)[0] + "/5"
    thread = RelayThread(
        relay_settings(certs, sink, url, relay_max_message_bytes=20_000, relay_max_recipients=3)
    ).start()
    yield thread
    thread.stop()


@pytest.fixture
def limited(limited_relay: RelayThread, certs: Any) -> Client:
    return Client(limited_relay, certs)


@pytest.mark.parametrize(
    "command", ["AUTH PLAIN AGZvbwBiYXI=", "MAIL FROM:<a@b.example>", "RCPT TO:<a@b.example>", "DATA", "RSET", "VRFY a"]
)
def test_commands_before_starttls_get_530_must_issue_starttls(client: Client, command: str) -> None:
    with client.plain() as smtp:
        smtp.ehlo("client.test")
        assert smtp.has_extn("starttls")
        assert not smtp.has_extn("auth")
        assert smtp.docmd(command) == (530, b"5.7.0 Must issue a STARTTLS command first")


@pytest.mark.parametrize("port", PORTS)
def test_mail_before_auth_over_tls_is_530_authentication_required(client: Client, port: str) -> None:
    with client.tls(port) as smtp:
        assert smtp.has_extn("auth")
        assert smtp.docmd("MAIL FROM:<a@b.example>") == (530, b"5.7.0 Authentication required")


@matrix
@pytest.mark.parametrize("case", ["unknown user", "wrong password", "deactivated"])
def test_bad_credentials_get_535_5_7_8(
    client: Client, credentials: Credentials, port: str, mechanism: str, case: str
) -> None:
    cred = credentials.create(active=case != "deactivated")
    username = f"nobody-{cred.username}" if case == "unknown user" else cred.username
    password = "wrong" + cred.password if case == "wrong password" else cred.password
    with client.tls(port) as smtp:
        assert auth(smtp, mechanism, username, password) == (535, b"5.7.8 Authentication credentials invalid")


@matrix
def test_good_credentials_get_235(client: Client, credentials: Credentials, port: str, mechanism: str) -> None:
    cred = credentials.create()
    with client.tls(port) as smtp:
        assert auth(smtp, mechanism, cred.username, cred.password) == (235, b"2.7.0 Authentication successful")


@matrix
def test_too_many_failed_auths_on_one_connection_get_454_then_close(
    client: Client, credentials: Credentials, port: str, mechanism: str
) -> None:
    cred = credentials.create()
    smtp = client.tls(port)
    assert auth(smtp, mechanism, cred.username, "bad1")[0] == 535
    assert auth(smtp, mechanism, cred.username, "bad2")[0] == 535
    assert auth(smtp, mechanism, cred.username, "bad3") == (
        454,
        b"4.7.0 Too many authentication failures, closing connection",
    )
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.noop()


@matrix
def test_mail_from_outside_the_credential_domain_is_553(
    client: Client, credentials: Credentials, port: str, mechanism: str
) -> None:
    cred = credentials.create()
    with client.login(cred, port, mechanism) as smtp:
        assert smtp.docmd(f"MAIL FROM:<ceo@other-{cred.domain}>") == (
            553,
            b"5.7.1 Sender address rejected: not owned by user",
        )
        assert smtp.docmd(f"MAIL FROM:<app@mail.{cred.domain}>")[0] == 250


@matrix
def test_header_from_outside_the_credential_domain_is_550(
    client: Client, credentials: Credentials, sink: Sink, port: str, mechanism: str
) -> None:
    cred = credentials.create()
    before = sink.count()
    with client.login(cred, port, mechanism) as smtp:
        sender = f"app@{cred.domain}"
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail(sender, ["a@dest.example"], message(sender, from_header="ceo@bank.example"))
        assert (refused.value.smtp_code, refused.value.smtp_error) == (
            550,
            b"5.7.1 From: header rejected: not owned by user",
        )
    assert sink.count() == before


@matrix
def test_message_over_the_size_limit_is_552(
    limited: Client, credentials: Credentials, sink: Sink, port: str, mechanism: str
) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    before = sink.count()
    with limited.login(cred, port, mechanism) as smtp:
        assert "SIZE 20000" in smtp.ehlo_resp.decode()
        assert smtp.docmd(f"MAIL FROM:<{sender}> SIZE=20001") == (
            552,
            b"5.3.4 Message size exceeds fixed maximum message size",
        )
        # Without SIZE= the limit is enforced on the data itself, answered after the end of data.
        assert smtp.mail(sender)[0] == 250
        assert smtp.rcpt("a@dest.example")[0] == 250
        code, text = smtp.data(message(sender, body=("x" * 70 + "\r\n") * 300))
        assert (code, text) == (552, b"5.3.4 Message size exceeds fixed maximum message size")
        assert smtp.noop()[0] == 250
    assert sink.count() == before


@matrix
def test_too_many_recipients_is_452(limited: Client, credentials: Credentials, port: str, mechanism: str) -> None:
    cred = credentials.create()
    with limited.login(cred, port, mechanism) as smtp:
        assert smtp.docmd(f"MAIL FROM:<app@{cred.domain}>")[0] == 250
        for n in range(3):
            assert smtp.docmd(f"RCPT TO:<r{n}@dest.example>")[0] == 250
        assert smtp.docmd("RCPT TO:<r4@dest.example>") == (452, b"4.5.3 Too many recipients")


@matrix
@pytest.mark.parametrize("bad", [b"bare\nLF\r\n", b"bare\rCR\r\n"])
def test_bare_lf_or_cr_in_data_is_550_5_6_0_and_nothing_is_relayed(
    client: Client, credentials: Credentials, sink: Sink, port: str, mechanism: str, bad: bytes
) -> None:
    cred = credentials.create()
    before = sink.count()
    with client.login(cred, port, mechanism) as smtp:
        sender = f"app@{cred.domain}"
        smtp.mail(sender)
        smtp.rcpt("a@dest.example")
        assert smtp.docmd("DATA")[0] == 354
        smtp.send(b"From: " + sender.encode() + b"\r\n\r\n" + bad + b".\r\n")
        assert smtp.getreply() == (550, b"5.6.0 Bare CR or LF not allowed in message data")
        assert smtp.noop()[0] == 250
    assert sink.count() == before


@matrix
def test_accepted_is_250_only_once_the_upstream_has_the_message(
    client: Client, credentials: Credentials, sink: Sink, port: str, mechanism: str
) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    subject = f"row-accepted-{port}-{mechanism}"
    with client.login(cred, port, mechanism) as smtp:
        smtp.mail(sender)
        smtp.rcpt("a@dest.example")
        code, text = smtp.data(message(sender, subject=subject))
        assert code == 250 and text.startswith(b"2.0.0")
        # The sink stored it before the relay answered: it is there the moment 250 arrives.
        stored = [m for m in sink.messages() if subject.encode() in m]
    assert len(stored) == 1
    assert stored[0].count(b"by relay.test (Taifa relay) with ESMTPSA") == 1

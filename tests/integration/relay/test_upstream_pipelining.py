"""PIPELINING (RFC 2920) to an upstream that offers it (issue 18): the envelope goes in one write, the body in
another, and the transaction stays all-or-nothing: a refused MAIL or RCPT means nothing is sent, and with several
recipients DATA is sent only once every one of them was accepted."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

from tests.integration.relay.fake_upstream import ScriptedUpstream
from tests.integration.relay.support import Certs, Client, Credentials, message


@pytest.fixture
def pipelining_upstream(certs: Certs) -> Iterator[Any]:
    started: list[ScriptedUpstream] = []

    def start(**replies: str) -> ScriptedUpstream:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        certs.ca.issue_cert("127.0.0.1", key_type=trustme.KeyType.ECDSA).configure_cert(context)
        upstream = ScriptedUpstream(tls=context, pipelining=True, replies=replies).start()
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        upstream.stop()


def _send(relay: Any, certs: Certs, credentials: Credentials, recipients: list[str], count: int = 1) -> list[Any]:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    results = []
    with Client(relay, certs).login(cred) as smtp:
        for _ in range(count):
            smtp.mail(sender)
            for recipient in recipients:
                smtp.rcpt(recipient)
            results.append(smtp.data(message(sender)))
    return results


def test_messages_go_pipelined_over_tls_and_reuse_the_connection(
    pipelining_upstream: Any, make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    upstream = pipelining_upstream()
    relay = make_relay(relay_upstream_port=upstream.port)
    results = _send(relay, certs, credentials, ["a@dest.example"], count=3)
    assert [code for code, _ in results] == [250, 250, 250]
    assert len(upstream.messages) == 3 and upstream.pipelined_mails == 3
    assert "<tls>" in upstream.commands and upstream.commands.count("EHLO relay.test") == 2  # before/after STARTTLS
    after_tls = upstream.commands[upstream.commands.index("<tls>") + 1 :]
    assert [c.split(" ", 1)[0] for c in after_tls[1:]] == ["MAIL", "RCPT", "DATA"] * 3
    assert all(b"by relay.test (Taifa relay)" in stored for stored in upstream.messages)


def test_a_refused_recipient_sends_nothing_and_its_code_reaches_the_client(
    pipelining_upstream: Any, make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    upstream = pipelining_upstream(RCPT="550 5.1.1 no such user")
    relay = make_relay(relay_upstream_port=upstream.port)
    [(code, text)] = _send(relay, certs, credentials, ["a@dest.example"])
    assert code == 550 and b"no such user" in text
    assert upstream.messages == []
    # This scripted upstream even answers 354 to the pipelined DATA after refusing the recipient: the relay sends
    # no body on that session (it closes it) and the next message gets a fresh connection.
    [(code, _)] = _send(relay, certs, credentials, ["a@dest.example"])
    assert code == 550 and upstream.messages == []


def test_with_several_recipients_one_refusal_resets_the_envelope_before_any_data(
    pipelining_upstream: Any, make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    upstream = pipelining_upstream(RCPT="451 4.3.0 try later")
    relay = make_relay(relay_upstream_port=upstream.port)
    [(code, text)] = _send(relay, certs, credentials, ["a@dest.example", "b@dest.example"])
    assert code == 451 and text.startswith(b"4.")
    verbs = [c.split(" ", 1)[0] for c in upstream.commands]
    assert "DATA" not in verbs and "RSET" in verbs and upstream.messages == []


def test_a_refused_sender_is_passed_through_and_the_connection_still_serves(
    pipelining_upstream: Any, make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    upstream = pipelining_upstream(MAIL="554 5.7.1 sender refused")
    relay = make_relay(relay_upstream_port=upstream.port)
    [(code, text)] = _send(relay, certs, credentials, ["a@dest.example"])
    assert code == 554 and b"sender refused" in text and upstream.messages == []
    upstream.replies.clear()
    [(code, _)] = _send(relay, certs, credentials, ["a@dest.example"])
    assert code == 250 and len(upstream.messages) == 1

"""Case A14 of docs/testing.md and the relay's TLS 1.3 session tickets: protocol versions, cipher suites, the
verified chain, one ticket per handshake that a client can resume with (both listeners: STARTTLS on submission,
implicit TLS on smtps)."""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

import pytest

from tests.integration.relay.support import Client, Raw


@pytest.mark.parametrize("port", ["submission", "smtps"])
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_a14_tls_below_1_2_is_refused(client: Client, port: str, version: ssl.TLSVersion) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(client.certs.ca_file))
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.minimum_version = version
    context.maximum_version = version
    _expect_handshake_failure(client, port, context)


@pytest.mark.parametrize("port", ["submission", "smtps"])
@pytest.mark.parametrize(
    "ciphers",
    [
        "AES128-SHA:AES256-SHA",
        "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA",
        "ALL:!AESGCM:!CHACHA20:!AESCCM:@SECLEVEL=0",
    ],
)
def test_a14_weak_or_non_aead_tls12_ciphers_are_refused(client: Client, port: str, ciphers: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(client.certs.ca_file))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    _expect_handshake_failure(client, port, context)


@pytest.mark.parametrize("port", ["submission", "smtps"])
def test_a14_tls12_with_ecdsa_aead_and_a_verified_chain_works(client: Client, port: str) -> None:
    context = client.certs.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    sock = _tls_socket(client, port, context)
    try:
        assert sock.version() == "TLSv1.2"
        name, _, _ = sock.cipher()
        assert name.startswith("ECDHE-ECDSA-") and ("GCM" in name or "CHACHA20" in name)
    finally:
        sock.close()


def _tls_socket(client: Client, port: str, context: ssl.SSLContext) -> ssl.SSLSocket:
    if port == "smtps":
        raw = socket.create_connection(("127.0.0.1", client.relay.smtps_port), timeout=5)
        return context.wrap_socket(raw, server_hostname="localhost")
    plain = Raw(client.relay.submission_port)
    assert plain.reply().startswith("220")
    plain.command("EHLO raw.test")
    assert plain.command("STARTTLS").startswith("220")
    return context.wrap_socket(plain.sock, server_hostname="localhost")


def _expect_handshake_failure(client: Client, port: str, context: ssl.SSLContext) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError)):
        sock = _tls_socket(client, port, context)
        sock.close()


def test_tls13_one_session_ticket_per_handshake_and_a_client_can_resume_with_it(client: Client) -> None:
    """As Postfix 3.7: one ticket after each full TLS 1.3 handshake (OpenSSL's default is two), enough to resume."""
    context = client.certs.client_context()
    tickets: list[object] = []

    def seen(conn: object, direction: str, version: object, kind: object, msg_type: object, data: object) -> None:
        if direction == "read" and msg_type == ssl._TLSMessageType.NEWSESSION_TICKET:  # type: ignore[attr-defined]
            tickets.append(msg_type)

    context._msg_callback = seen  # type: ignore[attr-defined]
    raw = socket.create_connection(("127.0.0.1", client.relay.smtps_port), timeout=5)
    first = context.wrap_socket(raw, server_hostname="localhost")
    try:
        assert first.version() == "TLSv1.3"
        assert first.recv(1024).startswith(b"220")  # the ticket arrives with or before the greeting
        session = first.session
    finally:
        first.close()
    assert len(tickets) == 1
    raw = socket.create_connection(("127.0.0.1", client.relay.smtps_port), timeout=5)
    second = context.wrap_socket(raw, server_hostname="localhost", session=session)
    try:
        assert second.recv(1024).startswith(b"220")
        assert second.session_reused
    finally:
        second.close()


@pytest.mark.parametrize("port", ["smtps", "starttls"])
def test_a14_a_tls_handshake_that_never_comes_is_cut_at_its_bound(make_relay: Any, port: str) -> None:
    # The handshake is bounded (the idle timeout, at most 30 s): a client that connects and never sends its
    # ClientHello does not hold a session slot for ever.
    relay = make_relay(relay_idle_timeout_seconds=1)
    target = relay.smtps_port if port == "smtps" else relay.submission_port
    with socket.create_connection(("127.0.0.1", target), timeout=10) as sock:
        if port == "starttls":
            assert sock.recv(1000).startswith(b"220")
            sock.sendall(b"EHLO a\r\nSTARTTLS\r\n")
            replies = b""
            while b"\r\n220 " not in b"\r\n" + replies:
                replies += sock.recv(1000)
        started = time.monotonic()
        while chunk := sock.recv(1000):  # nothing is sent: the relay closes at the bound (EOF)
            assert time.monotonic() - started < 8, chunk
        assert time.monotonic() - started < 8

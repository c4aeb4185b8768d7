"""Admission before any work: the relay's global session cap, per-client limits keyed by address group (an IPv6
/64 is one client), and connections on the implicit-TLS port counted before their TLS handshake."""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import struct
from typing import Any

import pytest
from taifa_localstack import wait_until

from tests.integration.relay.support import Certs, Credentials, Raw, plain_auth_arg


def _proxied(port: int, source: str) -> Raw:
    """A connection that claims `source` through the PROXY protocol (v1), as a load balancer would."""
    raw = Raw(port)
    family = "TCP6" if ":" in source else "TCP4"
    destination = "2001:db8::25" if family == "TCP6" else "192.0.2.25"
    raw.send(f"PROXY {family} {source} {destination} 40000 587\r\n".encode())
    return raw


def test_the_global_session_cap_gives_421_to_the_next_client(make_relay: Any) -> None:
    relay = make_relay(relay_max_sessions=3)
    held = [Raw(relay.submission_port, source=f"127.0.0.{101 + n}") for n in range(3)]
    for raw in held:
        assert raw.reply().startswith("220")
    newcomer = Raw(relay.submission_port, source="127.0.0.110")
    assert newcomer.reply() == "421 4.7.0 Server busy, too many connections, try again later"
    assert newcomer.closed()
    held[0].command("QUIT")
    held[0].close()

    def admitted() -> bool:
        again = Raw(relay.submission_port, source="127.0.0.111")
        try:
            return again.reply().startswith("220")
        finally:
            again.close()

    wait_until(admitted, 5, "a freed slot admits a new session")
    for raw in [*held[1:], newcomer]:
        raw.close()


def test_addresses_in_one_ipv6_64_share_the_per_client_session_cap(make_relay: Any) -> None:
    relay = make_relay(relay_proxy_protocol=True, relay_max_sessions_per_client=2)
    first = _proxied(relay.submission_port, "2001:db8:1:2::1")
    second = _proxied(relay.submission_port, "2001:db8:1:2:ffff:ffff:ffff:fffe")
    assert first.reply().startswith("220") and second.reply().startswith("220")
    same_64 = _proxied(relay.submission_port, "2001:db8:1:2:abcd::9")
    assert same_64.reply() == "421 4.7.0 Too many concurrent connections from your address"
    next_64 = _proxied(relay.submission_port, "2001:db8:1:3::1")
    assert next_64.reply().startswith("220")
    for raw in (first, second, same_64, next_64):
        raw.close()


def test_addresses_in_one_ipv6_64_share_the_connection_rate_cap(make_relay: Any) -> None:
    relay = make_relay(relay_proxy_protocol=True, relay_max_connections_per_minute=3)
    replies = []
    for n in range(4):
        raw = _proxied(relay.submission_port, f"2001:db8:7:7::{n + 1:x}")
        replies.append(raw.reply()[:3])
        raw.close()
    assert replies == ["220", "220", "220", "421"]
    other = _proxied(relay.submission_port, "2001:db8:7:8::1")
    assert other.reply().startswith("220")
    other.close()


@pytest.mark.parametrize(
    "limit", [{"relay_max_connections_per_minute": 3}, {"relay_max_sessions_per_client": 3}], ids=["rate", "sessions"]
)
def test_connections_that_never_finish_a_tls_handshake_count_against_the_limits(
    make_relay: Any, certs: Certs, limit: dict[str, int]
) -> None:
    relay = make_relay(**limit)
    # Raw TCP connections to the implicit-TLS port that never send a ClientHello.
    held = [Raw(relay.smtps_port, source="127.0.0.121") for _ in range(3)]
    extra = Raw(relay.smtps_port, source="127.0.0.121")
    assert extra.closed(), "the connection over the cap is closed without a handshake"
    assert extra.buffer == b"", "no plaintext reply on the implicit-TLS port"
    with pytest.raises((ssl.SSLError, ConnectionError, smtplib.SMTPServerDisconnected)):
        smtplib.SMTP_SSL(
            "localhost", relay.smtps_port, timeout=10, context=certs.client_context(), source_address=("127.0.0.121", 0)
        )
    with smtplib.SMTP_SSL(
        "localhost", relay.smtps_port, timeout=10, context=certs.client_context(), source_address=("127.0.0.122", 0)
    ) as other:
        assert other.ehlo("client.test")[0] == 250
    for raw in [*held, extra]:
        raw.close()


def _client_hello() -> bytes:
    hello = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname="x")
    with contextlib.suppress(ssl.SSLWantReadError):
        hello.do_handshake()
    return outgoing.read()


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
    sock.close()


@pytest.mark.parametrize("when", ["after-starttls-220", "after-client-hello", "implicit-tls-after-client-hello"])
def test_c6_a_connection_reset_during_a_tls_handshake_gives_its_slot_back(make_relay: Any, when: str) -> None:
    # The loop's TLS layer drops a connection reset mid-handshake without `connection_lost`: its slot was held for
    # good, and max_sessions such resets locked every client out (421) until the process restarted.
    relay = make_relay(relay_max_sessions=3, relay_max_sessions_per_client=50)
    implicit = when.startswith("implicit")
    for n in range(3):
        port = relay.smtps_port if implicit else relay.submission_port
        sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(f"127.0.0.{141 + n}", 0))
        if not implicit:
            assert sock.recv(1000).startswith(b"220")
            sock.sendall(b"EHLO a\r\nSTARTTLS\r\n")
            replies = b""
            while b"\r\n220 " not in b"\r\n" + replies:
                replies += sock.recv(1000)
        if when != "after-starttls-220":
            sock.sendall(_client_hello())
            sock.recv(1)  # the handshake is under way (the ServerHello came): reset in the middle of it
        _reset(sock)
    assert relay.relay is not None
    sessions = relay.relay.parts.sessions
    wait_until(lambda: not sessions.sessions, 10, "the reset connections' slots given back")
    raw = Raw(relay.submission_port, source="127.0.0.200", timeout=5)
    try:
        assert raw.reply().startswith("220")  # another client is served
    finally:
        raw.close()


def _login_through(raw: Raw, username: str, password: str) -> str:
    """STARTTLS and AUTH PLAIN on a connection whose banner was read."""
    raw.command("EHLO proxy.test")
    raw.command("STARTTLS")
    raw.starttls()
    raw.command("EHLO proxy.test")
    return raw.command(f"AUTH PLAIN {plain_auth_arg(username, password)}")


def test_c7_only_the_trusted_balancer_names_the_client_in_a_proxy_header(
    make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    # A header from anyone would choose the address that allowlists and throttles see: a direct client claiming an
    # address inside a credential's allowed_cidrs logged in from outside it.
    relay = make_relay(relay_proxy_protocol=True, relay_proxy_trusted_cidrs="127.0.0.2/32")
    cred = credentials.create()
    credentials.change(cred, allowed_cidrs=("203.0.113.0/24",))
    header = b"PROXY TCP4 203.0.113.9 192.0.2.25 40000 587\r\n"
    direct = Raw(relay.submission_port, certs=certs, source="127.0.0.1")
    direct.send(header)
    try:
        assert direct.reply().startswith("220")  # served as itself: its header is a line like any other
        assert direct.reply().startswith("5")  # ...and refused as a command
        assert _login_through(direct, cred.username, cred.password) == "535 5.7.8 Authentication credentials invalid"
    finally:
        direct.close()
    balancer = Raw(relay.submission_port, certs=certs, source="127.0.0.2")
    balancer.send(header)
    try:
        assert balancer.reply().startswith("220")
        assert _login_through(balancer, cred.username, cred.password).startswith("235")
    finally:
        balancer.close()


@pytest.mark.parametrize(
    "header",
    [b"PROXY UNKNOWN\r\n", b"\r\n\r\n\x00\r\nQUIT\n" + struct.pack("!BBH", 0x20, 0x00, 0)],
    ids=["v1-unknown", "v2-local"],
)
def test_c7_a_balancers_own_connection_is_served_as_itself(make_relay: Any, header: bytes) -> None:
    # PROXY v1 UNKNOWN and v2 LOCAL are the balancer's health checks (the spec: a receiver must accept them and
    # use the real endpoints); they were closed without a banner, so every relay looked down to HAProxy.
    relay = make_relay(relay_proxy_protocol=True)
    raw = Raw(relay.submission_port)
    raw.send(header)
    try:
        assert raw.reply().startswith("220")
        assert raw.command("NOOP").startswith("250")
    finally:
        raw.close()

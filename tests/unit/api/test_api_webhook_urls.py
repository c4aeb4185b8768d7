"""Webhook URL and address rules (SSRF): taifa_api.domain.webhook_urls, pure."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from taifa_api.domain.webhook_urls import (
    REASON_LINK_LOCAL,
    REASON_LOOPBACK,
    REASON_METADATA,
    REASON_PRIVATE,
    InvalidWebhookUrl,
    first_forbidden,
    is_forbidden_address,
    parse_webhook_url,
)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("raw", "url", "host", "port"),
    [
        ("https://hooks.example.com/taifa", "https://hooks.example.com/taifa", "hooks.example.com", 443),
        ("HTTPS://Hooks.Example.COM", "https://hooks.example.com/", "hooks.example.com", 443),
        ("https://hooks.example.com:443/x?a=1&b=2", "https://hooks.example.com/x?a=1&b=2", "hooks.example.com", 443),
        ("https://hooks.example.com:8443/x", "https://hooks.example.com:8443/x", "hooks.example.com", 8443),
        ("https://bücher.example/h", "https://xn--bcher-kva.example/h", "xn--bcher-kva.example", 443),
        ("https://hooks.example.com./p", "https://hooks.example.com/p", "hooks.example.com", 443),
        ("https://93.184.215.14/p", "https://93.184.215.14/p", "93.184.215.14", 443),
        ("https://[2606:4700:0::1111]:8443/", "https://[2606:4700::1111]:8443/", "2606:4700::1111", 8443),
    ],
)
def test_urls_are_normalised(raw: str, url: str, host: str, port: int) -> None:
    parsed = parse_webhook_url(raw, allow_http=False)
    assert (parsed.url, parsed.host, parsed.port) == (url, host, port)


def test_literal_addresses_are_parsed_and_names_are_not() -> None:
    assert parse_webhook_url("https://[::1]/", allow_http=False).address == ip("::1")
    assert parse_webhook_url("https://10.0.0.1/", allow_http=False).address == ip("10.0.0.1")
    assert parse_webhook_url("https://example.com/", allow_http=False).address is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("http://hooks.example.com/", "must use https"),
        ("ftp://hooks.example.com/", "must use https"),
        ("file:///etc/passwd", "must use https"),
        ("gopher://127.0.0.1:6379/_", "must use https"),
        ("hooks.example.com/x", "must use https"),
        ("https:hooks.example.com", "absolute"),
        ("https://user:pw@hooks.example.com/", "user information"),
        ("https://hooks.example.com@127.0.0.1/", "user information"),
        ("https://hooks.example.com/#frag", "fragment"),
        ("https://hooks.example.com/a b", "spaces"),
        ("https://hooks.example.com/\nx", "spaces"),
        ("https://hooks.example.com:0/", "port"),
        ("https://hooks.example.com:65536/", "port"),
        ("https://hooks.example.com:http/", "port"),
        ("https://hooks.example.com:/", "port"),
        ("https:///path", "no host"),
        ("https://127.1/", "not a valid IPv4"),
        ("https://0x7f.0.0.1/", "not a valid IPv4"),
        ("https://2130706433/", "not a valid IPv4"),
        ("https://0177.0.0.1/", "not a valid IPv4"),
        ("https://example.123/", "not a valid IPv4"),
        ("https://１３４７４４０７２/", "not a valid IPv4"),  # full-width digits: 134744072 once mapped
        ("https://１２７。０。０。１/", "not a valid IPv4"),  # ideographic full stops
        ("https://８.８.８.８/", "not a valid IPv4"),
        ("https://[::1/", "cannot be parsed"),
        ("https://[fe80::1%25eth0]/", "zone"),
        ("https://[not-v6]/", "IPv6|cannot be parsed"),
        ("https://exa mple.com/", "spaces"),
        ("https://exa%6dple.com/", "host name"),
        ("https://-bad-.example.com/", "host name"),
        ("https://a_b.example.com/", "host name"),
        ("https://hooks.example.com/é", "percent-encoded"),
        ("https://" + "a" * 64 + ".example.com/", "host name"),
        ("https://example.com/" + "a" * 2048, "2048"),
        ("", "2048"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidWebhookUrl, match=reason) as refused:
        parse_webhook_url(raw, allow_http=False)
    if raw:
        assert raw not in str(refused.value)  # never echoes the URL (it may carry a token)


def test_http_only_when_allowed() -> None:
    assert parse_webhook_url("http://localhost:9000/hook", allow_http=True).url == "http://localhost:9000/hook"
    assert parse_webhook_url("http://localhost:80/hook", allow_http=True).url == "http://localhost/hook"
    with pytest.raises(InvalidWebhookUrl, match="https or http"):
        parse_webhook_url("ftp://localhost/", allow_http=True)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", REASON_LOOPBACK),
        ("127.255.0.9", REASON_LOOPBACK),
        ("::1", REASON_LOOPBACK),
        ("10.1.2.3", REASON_PRIVATE),
        ("172.16.0.1", REASON_PRIVATE),
        ("172.31.255.255", REASON_PRIVATE),
        ("192.168.0.10", REASON_PRIVATE),
        ("fc00::1", REASON_PRIVATE),
        ("fd12:3456::1", REASON_PRIVATE),
        ("169.254.1.1", REASON_LINK_LOCAL),
        ("fe80::1", REASON_LINK_LOCAL),
        ("169.254.169.254", REASON_METADATA),
        ("169.254.170.2", REASON_METADATA),
        ("fd00:ec2::254", REASON_METADATA),
        ("100.100.100.200", REASON_METADATA),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "carrier-grade"),
        ("100.127.255.254", "carrier-grade"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("192.0.0.8", "reserved"),  # IETF protocol assignments (the runtime's tables vary by patch release)
        ("192.88.99.1", "reserved"),  # the deprecated 6to4 relay anycast
        ("3fff::1", "reserved"),  # IPv6 documentation, RFC 9637
        ("fec0::1", REASON_PRIVATE),
        ("192.0.2.10", "not publicly routable"),
        ("198.18.0.1", "not publicly routable"),
        ("2001:db8::1", "not publicly routable"),
        # IPv6 forms that carry an IPv4 address are judged by it.
        ("::ffff:127.0.0.1", REASON_LOOPBACK),
        ("::ffff:10.0.0.1", REASON_PRIVATE),
        ("::ffff:169.254.169.254", REASON_METADATA),
        ("64:ff9b::7f00:1", REASON_LOOPBACK),
        ("64:ff9b::a9fe:a9fe", REASON_METADATA),
        ("64:ff9b:1::1", REASON_PRIVATE),
        ("2002:7f00:1::", REASON_LOOPBACK),
        ("2002:c0a8:0101::1", REASON_PRIVATE),
        ("::127.0.0.1", "reserved"),
    ],
)
def test_forbidden_addresses(address: str, reason: str) -> None:
    found = is_forbidden_address(ip(address), allow_loopback=False)
    assert found is not None and reason in found


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address: str) -> None:
    assert is_forbidden_address(ip(address), allow_loopback=False) is None


def test_dev_allows_loopback_but_never_link_local_or_metadata() -> None:
    for allowed in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        assert is_forbidden_address(ip(allowed), allow_loopback=True) is None
    for refused, reason in [
        ("169.254.169.254", REASON_METADATA),
        ("fd00:ec2::254", REASON_METADATA),
        ("::ffff:169.254.169.254", REASON_METADATA),
        ("169.254.10.10", REASON_LINK_LOCAL),
        ("fe80::1", REASON_LINK_LOCAL),
        ("10.0.0.1", REASON_PRIVATE),
    ]:
        assert is_forbidden_address(ip(refused), allow_loopback=True) == reason
    assert is_forbidden_address(ip("0.0.0.0"), allow_loopback=True) is not None


def test_scoped_ipv6_is_link_local() -> None:
    assert is_forbidden_address(ipaddress.IPv6Address("fe80::1%eth0"), allow_loopback=True) == REASON_LINK_LOCAL


def test_every_resolved_address_must_pass() -> None:
    public, private = ip("93.184.215.14"), ip("10.0.0.7")
    assert first_forbidden([public], allow_loopback=False) is None
    assert first_forbidden([public, private], allow_loopback=False) == (private, REASON_PRIVATE)
    assert first_forbidden([], allow_loopback=False) is None


@given(st.ip_addresses(v=4))
def test_ipv4_mapped_form_is_judged_like_the_ipv4_address(v4: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{v4}")
    for allow in (False, True):
        assert is_forbidden_address(mapped, allow) == is_forbidden_address(v4, allow)


@given(st.ip_addresses())
def test_an_allowed_address_is_global_or_dev_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    if is_forbidden_address(address, allow_loopback=False) is None:
        assert address.is_global
    if is_forbidden_address(address, allow_loopback=True) is None:
        assert address.is_global or address.is_loopback or getattr(address, "ipv4_mapped", None) is not None


@given(st.text(max_size=80))
def test_parsing_never_fails_otherwise(text: str) -> None:
    with contextlib.suppress(InvalidWebhookUrl):
        parse_webhook_url(text, allow_http=True)

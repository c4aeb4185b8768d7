"""The webhook host check: resolution through the system resolver (/etc/hosts included), every address judged."""

from __future__ import annotations

import pytest
from taifa_api.adapters.webhook_resolver import check_webhook_host
from taifa_api.domain.webhook_urls import parse_webhook_url


async def test_localhost_resolves_to_loopback_and_is_refused_in_production() -> None:
    url = parse_webhook_url("https://localhost/hook", allow_http=False)
    checked = await check_webhook_host(url, allow_loopback=False, resolve_seconds=3)
    assert checked.refusal == "the URL resolves to a loopback address"
    assert checked.addresses


async def test_localhost_is_allowed_in_dev() -> None:
    url = parse_webhook_url("http://localhost:9000/hook", allow_http=True)
    checked = await check_webhook_host(url, allow_loopback=True, resolve_seconds=3)
    assert checked.refusal is None
    assert all(address.is_loopback for address in checked.addresses)


@pytest.mark.parametrize(
    ("raw", "refusal"),
    [
        ("https://10.0.0.1/", "the URL is a private address"),
        ("https://[::ffff:169.254.169.254]/", "the URL is a cloud metadata address"),
        ("https://[fd00:ec2::254]/", "the URL is a cloud metadata address"),
    ],
)
async def test_literal_addresses_are_judged_without_resolving(raw: str, refusal: str) -> None:
    checked = await check_webhook_host(parse_webhook_url(raw, allow_http=True), allow_loopback=True, resolve_seconds=3)
    assert checked.refusal == refusal


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    url = parse_webhook_url("https://no-such-host.invalid/", allow_http=False)
    checked = await check_webhook_host(url, allow_loopback=False, resolve_seconds=3)
    assert checked.refusal is not None and checked.addresses == ()

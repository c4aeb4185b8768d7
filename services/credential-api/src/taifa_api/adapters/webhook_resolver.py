"""Resolving a webhook URL's host to the addresses a connection would use, and judging each one (SSRF).

The system resolver (`getaddrinfo`, as an HTTP client would use: /etc/hosts included, so `localhost` resolves to
loopback and is refused in production), with a deadline. Every address must pass
`domain.webhook_urls.is_forbidden_address`; the creation check and the dispatcher use this same function, and
the dispatcher then connects to one of the addresses it checked (never resolving again), so DNS rebinding
cannot switch the target between the check and the connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from taifa_api.domain.webhook_urls import IPAddress, WebhookUrl, first_forbidden


@dataclass(frozen=True)
class ResolvedWebhookHost:
    """The checked addresses (in resolver order, without duplicates), or why the host may not be called.

    `refusal` is a sentence for the owner ("the URL resolves to a private address"); when it is set,
    `addresses` must not be connected to.
    """

    addresses: tuple[IPAddress, ...]
    refusal: str | None = None


async def resolve_addresses(host: str, port: int, resolve_seconds: float) -> tuple[IPAddress, ...]:
    """Every address `host` resolves to (TCP); OSError (socket.gaierror) or TimeoutError when it does not."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(resolve_seconds):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    seen: dict[IPAddress, None] = {}
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        text = str(sockaddr[0])
        if family == socket.AF_INET6 and len(sockaddr) >= 4 and sockaddr[3]:  # a scope id: link-local
            text = f"{text.split('%')[0]}%{sockaddr[3]}"
        seen.setdefault(ipaddress.ip_address(text), None)
    return tuple(seen)


async def check_webhook_host(url: WebhookUrl, *, allow_loopback: bool, resolve_seconds: float) -> ResolvedWebhookHost:
    """Resolve (unless the host is an IP literal) and judge every address; never raises for DNS failures."""
    if url.address is not None:
        addresses: tuple[IPAddress, ...] = (url.address,)
        verb = "is"
    else:
        verb = "resolves to"
        try:
            addresses = await resolve_addresses(url.host, url.port, resolve_seconds)
        except TimeoutError:
            return ResolvedWebhookHost((), "resolving the URL's host timed out")
        except (OSError, UnicodeError, ValueError):
            return ResolvedWebhookHost((), "the URL's host does not resolve")
        if not addresses:
            return ResolvedWebhookHost((), "the URL's host does not resolve")
    forbidden = first_forbidden(addresses, allow_loopback)
    if forbidden is not None:
        return ResolvedWebhookHost(addresses, f"the URL {verb} {forbidden[1]}")
    return ResolvedWebhookHost(addresses)


def host_check(*, allow_loopback: bool, resolve_seconds: float) -> Callable[[WebhookUrl], Awaitable[str | None]]:
    """The use cases' HostCheck port: None when the URL's host may be called, else the refusal sentence."""

    async def check(url: WebhookUrl) -> str | None:
        return (await check_webhook_host(url, allow_loopback=allow_loopback, resolve_seconds=resolve_seconds)).refusal

    return check

"""The rules a webhook URL and the addresses it resolves to must pass (SSRF protection). Pure: no DNS, no I/O.

- `parse_webhook_url(text, allow_http=...)`: `https` only (`http` too when allowed, a development setting),
  no user info, no fragment, a host that is a valid DNS name (IDNA, lowercase) or an IP literal in its one
  canonical form (no `127.1`, `0x7f.0.0.1` or `2130706433`, which resolvers read as addresses), an optional port
  1-65535, printable ASCII only outside the host, at most 2048 characters. The normalised URL is what is stored.
- `is_forbidden_address(ip, allow_loopback)`: why an address may not be called (a phrase such as
  "a private address"), or None. IPv4-mapped, NAT64 and 6to4 IPv6 addresses are judged by the IPv4 address they
  carry. Cloud metadata and link-local addresses are refused always; loopback only when `allow_loopback` (dev).
- `first_forbidden(addresses, allow_loopback)`: every address a name resolves to must pass (a name with one
  public and one private address is refused: the connection could go to either).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import idna

MAX_URL_LENGTH: Final = 2048
MAX_HOST_LENGTH: Final = 253
_LDH_LABEL: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_NUMERIC_LABEL: Final = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_PORT: Final = re.compile(r"^[0-9]{1,5}$")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services: AWS/GCP/Azure/OpenStack (IPv4 and AWS's IPv6), AWS ECS task metadata, Alibaba Cloud.
METADATA_ADDRESSES: Final[frozenset[IPAddress]] = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("169.254.170.2"),
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("100.100.100.200"),
    }
)
_THIS_NETWORK: Final = ipaddress.ip_network("0.0.0.0/8")
_SHARED_CGNAT: Final = ipaddress.ip_network("100.64.0.0/10")
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL: Final = ipaddress.ip_network("64:ff9b:1::/48")
_BROADCAST: Final = ipaddress.ip_address("255.255.255.255")
_PRIVATE_NETWORKS: Final = tuple(
    ipaddress.ip_network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fec0::/10")
)
# Special-purpose ranges the runtime's tables may not know (they change between Python patch releases): IETF
# protocol assignments, the deprecated 6to4 relay anycast, IPv6 documentation (RFC 9637).
_RESERVED_NETWORKS: Final = tuple(ipaddress.ip_network(net) for net in ("192.0.0.0/24", "192.88.99.0/24", "3fff::/20"))

REASON_METADATA: Final = "a cloud metadata address"
REASON_LINK_LOCAL: Final = "a link-local address"
REASON_LOOPBACK: Final = "a loopback address"
REASON_UNSPECIFIED: Final = "an unspecified address"
REASON_PRIVATE: Final = "a private address"
REASON_SHARED: Final = "a shared (carrier-grade NAT) address"
REASON_MULTICAST: Final = "a multicast address"
REASON_BROADCAST: Final = "the broadcast address"
REASON_RESERVED: Final = "a reserved address"
REASON_NOT_GLOBAL: Final = "an address that is not publicly routable"


class InvalidWebhookUrl(ValueError):
    """A URL the rules refuse; the message says why and never repeats the URL (it may hold a token)."""


@dataclass(frozen=True)
class WebhookUrl:
    """A parsed, normalised webhook URL. `address` is set when the host is an IP literal (nothing to resolve)."""

    url: str
    scheme: str
    host: str
    port: int
    address: IPAddress | None


def _normalise_host(raw: str) -> tuple[str, IPAddress | None]:
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise InvalidWebhookUrl("the host is not a valid IPv6 literal")
        inner = raw[1:-1]
        if "%" in inner:
            raise InvalidWebhookUrl("IPv6 zone identifiers are not allowed")
        try:
            v6 = ipaddress.IPv6Address(inner)
        except ValueError:
            raise InvalidWebhookUrl("the host is not a valid IPv6 literal") from None
        return f"[{v6.compressed}]", v6
    name = raw.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise InvalidWebhookUrl("the URL has no host")
    labels = name.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):  # an address, or something resolvers would read as one
        try:
            v4 = ipaddress.IPv4Address(name)
        except ValueError:
            raise InvalidWebhookUrl("the host is not a valid IPv4 address or host name") from None
        return str(v4), v4
    try:
        ascii_name = idna.encode(name, uts46=True, std3_rules=False).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        raise InvalidWebhookUrl("the host is not a valid host name") from None
    if len(ascii_name) > MAX_HOST_LENGTH or not all(_LDH_LABEL.match(label) for label in ascii_name.split(".")):
        raise InvalidWebhookUrl("the host is not a valid host name")
    if _NUMERIC_LABEL.match(ascii_name.split(".")[-1]):  # an address written with other digits or dots (１２７。０…)
        raise InvalidWebhookUrl("the host is not a valid IPv4 address or host name")
    return ascii_name, None


def _split_netloc(netloc: str) -> tuple[str, str | None]:
    """(host, port text or None) of an `authority` without user info; an IPv6 literal keeps its brackets."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise InvalidWebhookUrl("the host is not a valid IPv6 literal")
        rest = netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidWebhookUrl("the host is not a valid IPv6 literal")
        return netloc[: end + 1], (rest[1:] if rest else None)
    host, sep, port = netloc.rpartition(":")
    return (host, port) if sep else (netloc, None)


def parse_webhook_url(text: str, *, allow_http: bool) -> WebhookUrl:
    """The normalised URL, or InvalidWebhookUrl with the reason."""
    if not text or len(text) > MAX_URL_LENGTH:
        raise InvalidWebhookUrl(f"the URL must be 1 to {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise InvalidWebhookUrl("the URL may not contain spaces or control characters")
    try:
        parts = urlsplit(text)
    except ValueError:
        raise InvalidWebhookUrl("the URL cannot be parsed") from None
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if allow_http else ("https",)
    if scheme not in allowed:
        raise InvalidWebhookUrl("the URL must use https" if not allow_http else "the URL must use https or http")
    if not text[len(parts.scheme) :].startswith("://"):
        raise InvalidWebhookUrl("the URL must be absolute (scheme://host/path)")
    if "@" in parts.netloc:
        raise InvalidWebhookUrl("user information (user:password@) is not allowed in the URL")
    if parts.fragment or "#" in text:
        raise InvalidWebhookUrl("the URL may not have a fragment")
    if not text[len(parts.scheme) + 3 + len(parts.netloc) :].isascii():
        raise InvalidWebhookUrl("the path and query must be percent-encoded ASCII")
    host_text, port_text = _split_netloc(parts.netloc)
    if port_text is not None and (not _PORT.match(port_text) or not 1 <= int(port_text) <= 65535):
        raise InvalidWebhookUrl("the port must be a number from 1 to 65535")
    host, address = _normalise_host(host_text)
    default_port = 443 if scheme == "https" else 80
    port = int(port_text) if port_text is not None else default_port
    netloc = host if port == default_port else f"{host}:{port}"
    path = parts.path or "/"
    url = f"{scheme}://{netloc}{path}" + (f"?{parts.query}" if parts.query else "")
    return WebhookUrl(url=url, scheme=scheme, host=host.strip("[]"), port=port, address=address)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def is_forbidden_address(ip: IPAddress, allow_loopback: bool) -> str | None:
    """Why a webhook may not connect to `ip` (a phrase for "the URL resolves to ..."), or None when it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return REASON_LINK_LOCAL
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_forbidden_address(embedded, allow_loopback)
        if ip in _NAT64_LOCAL:
            return REASON_PRIVATE
    if ip in METADATA_ADDRESSES:
        return REASON_METADATA
    if ip.is_link_local:
        return REASON_LINK_LOCAL
    if ip.is_loopback:
        return None if allow_loopback else REASON_LOOPBACK
    if ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK):
        return REASON_UNSPECIFIED
    if ip.is_multicast:
        return REASON_MULTICAST
    if ip == _BROADCAST:
        return REASON_BROADCAST
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_CGNAT:
        return REASON_SHARED
    if any(ip in net for net in _PRIVATE_NETWORKS):
        return REASON_PRIVATE
    if ip.is_reserved or any(ip in net for net in _RESERVED_NETWORKS):
        return REASON_RESERVED
    if not ip.is_global:
        return REASON_NOT_GLOBAL
    return None


def first_forbidden(addresses: Iterable[IPAddress], allow_loopback: bool) -> tuple[IPAddress, str] | None:
    """The first address that may not be called and why; None when every one may (an empty list is the caller's
    to refuse: a name that resolves to nothing cannot be called either)."""
    for ip in addresses:
        reason = is_forbidden_address(ip, allow_loopback)
        if reason is not None:
            return ip, reason
    return None

"""Submission policy as pure functions: who may send as whom, what a message must look like, trace headers.

The SMTP protocol code calls these; none of them does I/O, so they are unit-tested without a socket.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from email.utils import format_datetime, getaddresses

_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
HEADER_END = b"\r\n\r\n"
RECEIVED_MARKER = "(Taifa relay)"


def address_domain(address: str) -> str | None:
    """The lowercase domain of `local@domain`, or None when the address has no usable domain."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return None
    domain = domain.rstrip(".").lower()
    if domain.startswith("[") or not all(_DOMAIN_LABEL.match(label) for label in domain.split(".")):
        return None
    # Source routes and %-/!-hacks hide a second destination inside the local part.
    if any(c in local for c in "@%!:") and not (local.startswith('"') and local.endswith('"')):
        return None
    return domain


def sender_allowed(address: str, credential_domain: str) -> bool:
    """True when `address` is in the credential's domain or one of its subdomains."""
    domain = address_domain(address)
    if domain is None:
        return False
    own = credential_domain.rstrip(".").lower()
    return domain == own or domain.endswith("." + own)


def header_block(message: bytes) -> bytes:
    """The header section of a CRLF message (everything before the first empty line)."""
    end = message.find(HEADER_END)
    if message.startswith(b"\r\n"):
        return b""
    return message if end < 0 else message[: end + 2]


def header_values(headers: bytes, name: str) -> list[str]:
    """All unfolded values of header `name` (case-insensitive) in a CRLF header block."""
    wanted = name.lower().encode("ascii") + b":"
    values: list[str] = []
    current: list[bytes] | None = None
    for line in headers.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                current.append(line)
            continue
        if current is not None:
            values.append(b"".join(current).decode("utf-8", "replace").strip())
            current = None
        if line[: len(wanted)].lower() == wanted:
            current = [line[len(wanted) :]]
    if current is not None:
        values.append(b"".join(current).decode("utf-8", "replace").strip())
    return values


def header_from_allowed(headers: bytes, credential_domain: str) -> bool | None:
    """Whether the From: header is acceptable: None when missing or ambiguous, else all addresses owned."""
    values = header_values(headers, "From")
    if len(values) != 1:
        return None
    addresses = [addr for _, addr in getaddresses(values)]
    if not addresses or any(not addr or "@" not in addr for addr in addresses):
        return None
    return all(sender_allowed(addr, credential_domain) for addr in addresses)


def own_received_count(headers: bytes, hostname: str) -> int:
    """How many Received: headers this relay (by `hostname`) has already added: a loop shows several."""
    marker = f"by {hostname.lower()} {RECEIVED_MARKER.lower()}"
    return sum(1 for value in header_values(headers, "Received") if marker in " ".join(value.lower().split()))


def received_header(
    *, helo: str, client_ip: str, hostname: str, tls_version: str | None, now: datetime, queue_id: str
) -> bytes:
    """The trace header (RFC 5321 §4.4) this relay prepends; no recipient, so multi-RCPT stays private."""
    safe_helo = re.sub(r"[^A-Za-z0-9.\-\[\]:_]", "?", helo)[:255]
    protocol = "ESMTPSA"
    tls = f" (using {tls_version})" if tls_version else ""
    return (
        f"Received: from {safe_helo} ([{client_ip}])\r\n"
        f"\tby {hostname} {RECEIVED_MARKER} with {protocol}{tls} id {queue_id};\r\n"
        f"\t{format_datetime(now)}\r\n"
    ).encode("ascii", "replace")


def has_bare_newline(data: bytes | bytearray) -> bool:
    """True when `data` holds a CR not followed by LF or an LF not preceded by CR (SMTP smuggling)."""
    pairs = data.count(b"\r\n")
    return data.count(b"\r") != pairs or data.count(b"\n") != pairs


def longest_line(data: bytes | bytearray) -> int:
    """Length of the longest CRLF-terminated line, CRLF included."""
    return max(map(len, data.split(b"\r\n"))) + 2


def throttle_key(client_ip: str) -> str:
    """The address group whose AUTH failures are counted together: the /32 for IPv4, the /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


def is_null_sender(arg: str | None) -> bool:
    """True for `MAIL FROM:<>` (with or without parameters)."""
    if not arg:
        return False
    upper = arg.lstrip()
    if upper[:5].upper() != "FROM:":
        return False
    return upper[5:].lstrip().startswith("<>")

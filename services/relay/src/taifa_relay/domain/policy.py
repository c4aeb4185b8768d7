"""Submission policy as pure functions: who may send as whom, what a message must look like, trace headers.

The application layer (and the protocol, for what it checks before parsing) calls these; none of them does I/O,
so they are unit-tested without a socket.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from datetime import datetime
from email._header_value_parser import get_angle_addr  # aiosmtpd's own reader of MAIL FROM:<...>
from email.errors import HeaderParseError
from email.headerregistry import AddressHeader, HeaderRegistry
from email.utils import format_datetime, getaddresses
from typing import NamedTuple

from taifa_relay.domain import replies

_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
HEADER_END = b"\r\n\r\n"
# RFC 5322 ftext: printable US-ASCII except the colon.
_FIELD_NAME = re.compile(rb"^[\x21-\x39\x3b-\x7e]+$")
# RFC 5322 §2.2.3: unfolding removes every CRLF that is followed by whitespace.
_FOLD = re.compile(rb"\r\n(?=[ \t])")
RECEIVED_MARKER = "(Taifa relay)"


def address_domain(address: str) -> str | None:
    """The lowercase domain of `local@domain`, or None when the address has no usable domain. An address with a
    control character (CR, LF, HTAB, NUL, DEL...) has none: no RFC 5321 address holds one, and the upstream
    client's parser stops at a CR (`"ceo@bank.example\r"@own.example` would reach it as `ceo@bank.example`)."""
    if _CONTROL.search(address):
        return None
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


def header_fields(headers: bytes) -> list[tuple[bytes, bytes]]:
    """Every field of a CRLF header block as (lowercase name, unfolded value), read as loosely as the
    loosest RFC 5322 reader would, so that no field some parser reads as From can pass unseen.

    The name is what precedes the first colon with surrounding whitespace stripped (the obsolete
    `From : x` form of RFC 5322 §4.5.3 and indented variants). A line starting with SP or HTAB continues
    the previous field only when there is one; otherwise (the first line, or after a line that is no
    field) it is read as a field of its own. An mbox separator (`From x@y date`, no colon after the name)
    reads as a From field with an empty value, so it can never stand beside, or instead of, a real From.
    """
    fields: list[tuple[bytes, bytes]] = []
    name: bytes | None = None
    value: list[bytes] = []
    for line in headers.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and name is not None:
            value.append(line)
            continue
        if name is not None:
            fields.append((name, b"".join(value)))
            name = None
        head, colon, rest = line.partition(b":")
        candidate = head.strip().lower()
        if colon and _FIELD_NAME.match(candidate):
            name, value = candidate, [rest]
        elif line.lstrip()[:5].lower() in (b"from ", b"from\t"):
            fields.append((b"from", b""))
    if name is not None:
        fields.append((name, b"".join(value)))
    return fields


def unfolded_fields(headers: bytes) -> list[tuple[bytes, bytes]]:
    """Every field as RFC 5322 §2.2.3 reads the block: unfolded first, then one field per line (a name, optional
    whitespace, a colon). `header_fields` reads lines first; the two differ only on malformed blocks (a name
    alone on its line with its colon folded onto the next, `From\r\n : x`; a field indented after a line that
    is no field), and `check_header_identities` refuses a message whose From or Sender they read differently."""
    fields: list[tuple[bytes, bytes]] = []
    for line in _FOLD.sub(b"", headers).split(b"\r\n"):
        head, colon, rest = line.partition(b":")
        candidate = head.strip().lower()
        if colon and _FIELD_NAME.match(candidate):
            fields.append((candidate, rest))
        elif line.lstrip()[:5].lower() in (b"from ", b"from\t"):
            fields.append((b"from", b""))
    return fields


def header_values(headers: bytes, name: str) -> list[str]:
    """All unfolded values of header `name` (case-insensitive) in a CRLF header block (see header_fields)."""
    wanted = name.lower().encode("ascii")
    return [value.decode("utf-8", "replace").strip() for field, value in header_fields(headers) if field == wanted]


# Parsed header values -> their addresses. email.utils.getaddresses is the costliest step of a message's checks
# (RFC 5322 tokenising in pure Python) and an application sends the same From: again and again; a pure function of
# its argument, so a memo is exact. Bounded: emptied when full (a miss only costs a parse).
_ADDRESSES: dict[str, tuple[str, ...]] = {}
_MAX_ADDRESSES = 4096


_STRICT = HeaderRegistry()  # the standard library's RFC 5322 parser (email.policy.default's)


# A From or Sender value longer than this is refused as ambiguous before either reader runs: the standard library's
# parser takes quadratic time on some long values (160 KB of `a.a.a...` took 70 s), and a real one is far shorter.
MAX_ADDRESS_HEADER_CHARS = 2048


def _strict_domains(value: str) -> list[str] | None:
    """The domains of the addresses in a From/Sender value as the standard library's RFC 5322 parser reads them (its
    defects aside: an encoded word in quotes is one, and both readers still agree on the domains), or None when it
    cannot read the value at all."""
    try:
        header = _STRICT("from", value)
        if not isinstance(header, AddressHeader):
            return None
        return [address.domain.rstrip(".").lower() for address in header.addresses]
    except Exception:  # noqa: BLE001 - a value that parser cannot read is ambiguous, whatever it raised
        return None


def _read_addresses(value: str) -> tuple[str, ...]:
    """The addresses of one header value, or () when the two readers disagree on their domains (or the value is too
    long to be read safely, or nests too deep for `getaddresses`).

    `getaddresses` alone glues domain parts split by whitespace, a fold or a comment into one name (`ceo@bank.example
    x.own.example` -> `ceo@bank.examplex.own.example`, a subdomain of own.example), where RFC 5322 reads
    `ceo@bank.example`: a message's From is only trusted when both readings name the same domains."""
    if len(value) > MAX_ADDRESS_HEADER_CHARS:
        return ()
    try:
        parsed = tuple(addr for _, addr in getaddresses([value]))
    except RecursionError:  # hundreds of nested comments
        return ()
    strict = _strict_domains(value)
    lax = [addr.rpartition("@")[2].rstrip(".").lower() for addr in parsed]  # the rules come after (address_domain)
    return parsed if strict is not None and strict == lax else ()


def header_addresses(values: list[str]) -> list[str] | None:
    """The addresses of one header's values; None unless there is exactly one value and every address in it
    has a domain part that both readers agree on (a missing, repeated, unparsable or ambiguous header)."""
    if len(values) != 1:
        return None
    parsed = _ADDRESSES.get(values[0])
    if parsed is None:
        if len(_ADDRESSES) >= _MAX_ADDRESSES:
            _ADDRESSES.clear()
        parsed = _ADDRESSES[values[0]] = _read_addresses(values[0])
    if not parsed or any(not addr or "@" not in addr for addr in parsed):
        return None
    return list(parsed)


class HeaderVerdict(NamedTuple):
    """The header identity check: a refusal reply, or the domain names whose owners must still be looked up."""

    refusal: str | None
    lookups: list[str]


def check_header_identities(
    headers: bytes, credential_domain: str, fields: list[tuple[bytes, bytes]] | None = None
) -> HeaderVerdict:
    """From: (exactly one field with one address, in the credential's domain or a subdomain) and Sender:
    (optional; if present one field with one mailbox, same rule: MUAs show it as "on behalf of").
    The verdict's lookups are the subdomains that another account may hold (`owner_lookup_names`).
    `fields`: `header_fields(headers)` when the caller has it already."""
    if fields is None:
        fields = header_fields(headers)
    unfolded = unfolded_fields(headers)
    from_values = _same_values(fields, unfolded, b"from")
    from_addresses = header_addresses(from_values) if from_values is not None else None
    if from_addresses is None or len(from_addresses) != 1:  # one author (several would need a Sender: as well)
        return HeaderVerdict(replies.HEADER_FROM_MISSING, [])
    if not all(sender_allowed(addr, credential_domain) for addr in from_addresses):
        return HeaderVerdict(replies.HEADER_FROM_NOT_ALLOWED, [])
    sender_values = _same_values(fields, unfolded, b"sender")
    if sender_values is None:
        return HeaderVerdict(replies.HEADER_SENDER_NOT_ALLOWED, [])
    sender_addresses = header_addresses(sender_values) if sender_values else []
    if sender_addresses is None or len(sender_addresses) > 1:
        return HeaderVerdict(replies.HEADER_SENDER_NOT_ALLOWED, [])
    if not all(sender_allowed(addr, credential_domain) for addr in sender_addresses):
        return HeaderVerdict(replies.HEADER_SENDER_NOT_ALLOWED, [])
    names: set[str] = set()
    for addr in (*from_addresses, *sender_addresses):
        names.update(owner_lookup_names(address_domain(addr) or "", credential_domain))
    return HeaderVerdict(None, sorted(names))


def owner_lookup_names(sender_domain: str, credential_domain: str) -> list[str]:
    """The names that may be another account's verified domain: the sender's domain and every domain between
    it and the credential's (which is excluded). `a.b.example.com` under `example.com` gives
    [`a.b.example.com`, `b.example.com`]; the credential's own domain gives [] (no lookup at all)."""
    own = credential_domain.rstrip(".").lower()
    domain = sender_domain.rstrip(".").lower()
    if not own or domain == own or not domain.endswith("." + own):
        return []
    labels = domain[: -len(own) - 1].split(".")
    return [".".join(labels[i:]) + "." + own for i in range(len(labels))]


def owners_allow(owners: Sequence[str | None], account_id: str | None) -> bool:
    """True when no looked-up name is verified by an account other than `account_id` (docs/api.md: a
    subdomain another account has verified is that account's). Without an account id, any owner refuses."""
    mine = (account_id or "").strip().lower()
    return all(owner is None or (bool(mine) and owner.strip().lower() == mine) for owner in owners)


def _same_values(
    fields: list[tuple[bytes, bytes]], unfolded: list[tuple[bytes, bytes]], name: bytes
) -> list[str] | None:
    """The values of field `name` when both readings of the block find the same ones (whitespace aside), else
    None: a field one parser would see and another would not is ambiguous."""
    values = [_text(v) for n, v in fields if n == name]
    others = [_text(v) for n, v in unfolded if n == name]
    if [" ".join(v.split()) for v in values] != [" ".join(v.split()) for v in others]:
        return None
    return values


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace").strip()


def own_received_count(headers: bytes, hostname: str, fields: list[tuple[bytes, bytes]] | None = None) -> int:
    """How many Received: headers this relay (by `hostname`) has already added: a loop shows several.
    `fields`: `header_fields(headers)` when the caller has it already."""
    marker = f"by {hostname.lower()} {RECEIVED_MARKER.lower()}"
    if fields is None:
        fields = header_fields(headers)
    values = (_text(value) for name, value in fields if name == b"received")
    return sum(1 for value in values if marker in " ".join(value.lower().split()))


def received_header(
    *, helo: str, client_ip: str, hostname: str, tls_version: str | None, now: datetime, queue_id: str
) -> bytes:
    """The trace header (RFC 5321 §4.4) this relay prepends; no recipient, so multi-RCPT stays private."""
    safe_helo = _safe_helo(helo)
    protocol = "ESMTPSA"
    tls = f" (using {tls_version})" if tls_version else ""
    return (
        f"Received: from {safe_helo} ([{client_ip}])\r\n"
        f"\tby {hostname} {RECEIVED_MARKER} with {protocol}{tls} id {queue_id};\r\n"
        f"\t{_rfc5322_date(now.replace(microsecond=0))}\r\n"
    ).encode("ascii", "replace")


@functools.lru_cache(maxsize=4)
def _rfc5322_date(second: datetime) -> str:
    """`format_datetime` of a whole second (it shows no fraction): messages of the same second share one."""
    return format_datetime(second)


_UNSAFE_HELO = re.compile(r"[^A-Za-z0-9.\-\[\]:_]")


@functools.lru_cache(maxsize=1024)
def _safe_helo(helo: str) -> str:
    """The client's EHLO name as the trace header may show it (a client sends the same one on every message)."""
    return _UNSAFE_HELO.sub("?", helo)[:255]


# Byte maps for `has_bare_newline`: 1 where the byte is a CR (resp. an LF), 0 elsewhere.
_CR_MAP = bytes(byte == 0x0D for byte in range(256))
_LF_MAP = bytes(byte == 0x0A for byte in range(256))


def has_bare_newline(data: bytes | bytearray) -> bool:
    """True when `data` holds a CR not followed by LF or an LF not preceded by CR (SMTP smuggling).

    Two C-level passes instead of counting CRLF pairs (a 10 KB message: ~6 us instead of ~16 us): the CR map
    shifted by one byte must equal the LF map, with no CR last and no LF first.
    """
    crs = data.translate(_CR_MAP)
    lfs = data.translate(_LF_MAP)
    return crs[:-1] != lfs[1:] or crs[-1:] == b"\x01" or lfs[:1] == b"\x01"


def has_long_line(data: bytes | bytearray, limit: int) -> bool:
    """True when a line of `data` (split at CRLF, CRLF counted) is longer than `limit` bytes.

    Meant for data without bare CR/LF (`has_bare_newline` first): it jumps to the last LF of each `limit`-byte
    window, a few steps per message instead of one object per line.
    """
    pos = 0
    size = len(data)
    while size - pos >= limit - 1:
        last_lf = data.rfind(b"\n", pos, pos + limit)
        if last_lf < 0:
            return True
        pos = last_lf + 1
    return False


def address_group(client_ip: str) -> str:
    """The client address group that every per-client limit counts together (sessions, connection rate, AUTH
    failures): the address for IPv4, the /64 for IPv6, since one IPv6 host is given a whole /64 to rotate in."""
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


throttle_key = address_group  # the name the AUTH failure counters use


def _mail_from_address(arg: str | None) -> str | None:
    """What follows `FROM:` in a MAIL command's argument (the address and its parameters), None without it."""
    if not arg:
        return None
    rest = arg.lstrip()
    return rest[5:] if rest[:5].upper() == "FROM:" else None


def has_source_route(arg: str | None) -> bool:
    """True for `MAIL FROM:<@relay.example:app@example.com>` (RFC 5321 §4.1.2's obsolete route, which aiosmtpd
    strips before the address is checked): refused for submission, never silently dropped. Read with the parser
    aiosmtpd reads the address with, so every form it strips a route from (`<,@a:b@c>`, a comment before the `@`)
    counts."""
    address = _mail_from_address(arg)
    if address is None or not address.lstrip().startswith("<"):
        return False
    try:
        angle, _ = get_angle_addr(address)
    except (HeaderParseError, IndexError):  # aiosmtpd refuses what it cannot read as a syntax error
        return False
    return angle.route is not None


def is_null_sender(arg: str | None) -> bool:
    """True for `MAIL FROM:<>` (with or without parameters)."""
    address = _mail_from_address(arg)
    return address is not None and address.lstrip().startswith("<>")

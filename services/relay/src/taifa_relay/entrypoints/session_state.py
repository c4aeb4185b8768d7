"""What one SMTP connection carries besides aiosmtpd's own state: its limits and the application's session state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

from aiosmtpd.smtp import Session

from taifa_relay.application.sessions import SessionState


@dataclass(frozen=True, slots=True)
class ProtocolLimits:
    """The per-connection limits (from Settings), handed to every protocol instance."""

    hostname: str
    max_message_bytes: int
    max_line_length: int
    max_command_length: int
    idle_timeout: float
    min_data_rate: int
    data_rate_grace: float
    error_soft_limit: int
    error_hard_limit: int
    error_delay: float
    proxy_timeout: float | None
    # Peers whose PROXY header is read (the load balancer); with `proxy_timeout` set, others are served directly.
    proxy_trusted: tuple[IPv4Network | IPv6Network, ...] = ()

    def proxy_from(self, peer: str) -> bool:
        """A PROXY header is expected from `peer`: the protocol is on and the peer is a trusted sender of it."""
        if self.proxy_timeout is None:
            return False
        try:
            address = ip_address(peer)
        except ValueError:
            return False
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.proxy_trusted)


def trusted_networks(text: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """TAIFA_RELAY_PROXY_TRUSTED_CIDRS as networks (ValueError names the entry that is not one)."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if entry:
            try:
                networks.append(ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"TAIFA_RELAY_PROXY_TRUSTED_CIDRS: {entry!r} is not a network") from None
    return tuple(networks)


class RelaySession(Session):
    """aiosmtpd's Session plus the application's `SessionState`, without the deprecated `login_data` warnings."""

    def __init__(self, loop: asyncio.AbstractEventLoop, state: SessionState | None = None) -> None:
        super().__init__(loop)
        self.state = state if state is not None else SessionState()

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


def forget_login(session: Session) -> None:
    """The application logged the session out (revoked): aiosmtpd's login goes too (its next MAIL gets 530)."""
    session.authenticated = False
    session.auth_data = None


# Keyed by the class itself (functools.cache would do, but mypy refuses a class as its Hashable argument).
_HOOK_NAMES: dict[tuple[type, tuple[str, ...]], list[str]] = {}


def hook_names(cls: type, prefixes: tuple[str, ...]) -> list[str]:
    """The attribute names of `cls` that start with one of `prefixes`, computed once per class.

    aiosmtpd builds its command, AUTH-mechanism and hook tables at every connection from `dir()` of the
    protocol and of the handler (`inspect.getmembers` reads every attribute: about 0.25 ms per connection)
    and keeps only the `smtp_*`, `auth_*` and `handle_*` names; `__dir__` returning just those gives it
    the same tables for a fraction of the cost.
    """
    key = (cls, prefixes)
    names = _HOOK_NAMES.get(key)
    if names is None:
        names = _HOOK_NAMES[key] = sorted(name for name in dir(cls) if name.startswith(prefixes))
    return names


# (local-part limit, MAIL/RCPT argument) -> aiosmtpd's parse of it. aiosmtpd's `SMTP._getaddr` tokenises the
# argument with email._header_value_parser and defines a typing.Protocol class on every call: about 8 % of the relay's
# CPU in load (b) of bench/relay. A pure function of its key (clients repeat their sender and recipients), so a memo is
# exact; bounded, emptied when full (a miss only costs aiosmtpd's parse).
_ADDRESSES: dict[tuple[int, str], tuple[str | None, str | None]] = {}
_MAX_ADDRESSES = 4096


def memoized_getaddr(
    parse: Callable[[str], tuple[str | None, str | None]], local_part_limit: int, arg: str
) -> tuple[str | None, str | None]:
    """`parse(arg)` (aiosmtpd's `_getaddr`), remembered for `(local_part_limit, arg)`."""
    key = (local_part_limit, arg)
    parsed = _ADDRESSES.get(key)
    if parsed is None:
        if len(_ADDRESSES) >= _MAX_ADDRESSES:
            _ADDRESSES.clear()
        try:
            parsed = parse(arg)
        except Exception:  # noqa: BLE001 - aiosmtpd's reader raises on some inputs (`\@[`...): malformed, 553
            parsed = (None, None)
        _ADDRESSES[key] = parsed
    return parsed

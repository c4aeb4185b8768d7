"""`entrypoints.smtp_setup.init_smtp` against aiosmtpd's own `SMTP.__init__`: the same attributes with the same values
(the same tables of commands, AUTH mechanisms and hooks), for both listeners and with or without PROXY protocol."""

from __future__ import annotations

import asyncio
import ssl
import weakref
from types import MethodType
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from taifa_relay.entrypoints import smtp_protocol
from taifa_relay.entrypoints.handler import RelayHandler
from taifa_relay.entrypoints.smtp_protocol import RelaySMTP
from taifa_relay.entrypoints.smtp_setup import init_smtp

from tests.unit.relay.relay_fakes import protocol_limits


def _aiosmtpd_init(protocol: SMTP, handler: RelayHandler, **arguments: Any) -> None:
    """The path init_smtp replaces: aiosmtpd's own SMTP.__init__ with RelaySMTP's arguments."""
    SMTP.__init__(protocol, handler, auth_required=True, loop=asyncio.get_running_loop(), **arguments)


def _comparable(protocol: SMTP) -> dict[str, Any]:
    """The instance attributes, with bound methods as (function, bound to this protocol or to what) and the
    stream objects by type."""
    out: dict[str, Any] = {}
    for name, value in vars(protocol).items():
        if isinstance(value, MethodType):
            value = (value.__func__, value.__self__ is protocol or value.__self__)
        elif isinstance(value, dict) and name in {"_smtp_methods", "_auth_methods", "_handle_hooks"}:
            value = {key: _comparable_member(protocol, member) for key, member in value.items()}
        elif isinstance(value, asyncio.StreamReader | asyncio.Future):
            value = (type(value), getattr(value, "_limit", None))
        elif isinstance(value, weakref.ref):
            referent = value()
            value = ("weakref", type(referent), getattr(referent, "_limit", None))
        out[name] = value
    return out


def _comparable_member(protocol: SMTP, member: Any) -> Any:
    if isinstance(member, MethodType):
        return (member.__func__, member.__self__ is protocol or member.__self__)
    method, is_builtin = member  # aiosmtpd's _AuthMechAttr
    return (method.__func__, method.__self__ is protocol, is_builtin)


@pytest.mark.parametrize("implicit_tls", [False, True])
@pytest.mark.parametrize("proxy_timeout", [None, 5.0])
async def test_init_smtp_sets_what_aiosmtpd_sets(implicit_tls: bool, proxy_timeout: float | None) -> None:
    handler = RelayHandler(submission=object())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    limits = protocol_limits(proxy_timeout)
    sessions: Any = object()
    ours = RelaySMTP(handler, sessions=sessions, limits=limits, tls_context=context, implicit_tls=implicit_tls)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(smtp_protocol, "init_smtp", _aiosmtpd_init)
        theirs = RelaySMTP(handler, sessions=sessions, limits=limits, tls_context=context, implicit_tls=implicit_tls)
    assert _comparable(ours) == _comparable(theirs)
    assert set(ours._smtp_methods) >= {"EHLO", "HELO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "QUIT", "NOOP"}
    assert set(ours._auth_methods) == {"PLAIN", "LOGIN"}
    assert set(ours._handle_hooks) == {"MAIL", "RCPT"}


def _init_bare(handler: RelayHandler, proxy_timeout: float | None) -> None:
    init_smtp(
        RelaySMTP.__new__(RelaySMTP),
        handler,
        data_size_limit=1,
        hostname="h",
        ident="ESMTP",
        tls_context=None,
        require_starttls=False,
        timeout=1.0,
        auth_require_tls=True,
        proxy_protocol_timeout=proxy_timeout,
    )


async def test_init_smtp_refuses_what_it_does_not_replicate() -> None:
    class EhloHandler(RelayHandler):
        async def handle_EHLO(self, *args: Any) -> str:
            return "250 x"

    with pytest.raises(TypeError):
        _init_bare(EhloHandler(submission=object()), None)
    with pytest.raises(ValueError, match="proxy_protocol_timeout"):
        _init_bare(RelayHandler(submission=object()), 0)

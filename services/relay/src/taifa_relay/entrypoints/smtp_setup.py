"""The per-connection state aiosmtpd 1.4.6's `SMTP.__init__` sets, without its per-connection reflection.

aiosmtpd builds three tables at every connection: the AUTH mechanisms (`inspect.getmembers` of the protocol and of
the handler), the handler's `handle_*` hooks and the protocol's `smtp_*` commands (`dir()` of each), and creates
its event loop through a `warnings.catch_warnings` block: about 25 us of the relay's CPU per connection, a tenth of
it for the bound methods themselves. The tables depend only on the classes (and the one handler object), so their
functions are looked up once per class here and bound to each connection; the rest are the same plain attribute
assignments as aiosmtpd's, for the arguments the relay passes. tests/unit/relay/test_smtp_setup_differential.py
compares the result with what `SMTP.__init__` itself sets.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from types import MethodType
from typing import Any

from aiosmtpd.smtp import SMTP, _AuthMechAttr, login_always_fail

# (class, prefix) -> {name without the prefix: the class's function}, computed once per class.
_FUNCTIONS: dict[tuple[type, str], dict[str, Callable[..., Any]]] = {}
# id(handler) -> (handler, its handle_* hooks as aiosmtpd names them); the relay has one handler per process.
_HOOKS: dict[int, tuple[object, dict[str, Callable[..., Any]]]] = {}


def _functions(cls: type, prefix: str) -> dict[str, Callable[..., Any]]:
    key = (cls, prefix)
    found = _FUNCTIONS.get(key)
    if found is None:
        found = _FUNCTIONS[key] = {
            name.replace(prefix, ""): getattr(cls, name) for name in dir(cls) if name.startswith(prefix)
        }
    return found


def _handle_hooks(handler: object) -> dict[str, Callable[..., Any]]:
    """aiosmtpd's `_handle_hooks` of `handler`: shared by every connection (aiosmtpd only reads it)."""
    cached = _HOOKS.get(id(handler))
    if cached is None or cached[0] is not handler:
        names = dir(handler)
        if "handle_EHLO" in names or any(name.startswith("auth_") for name in names):
            raise TypeError("init_smtp supports no handle_EHLO hook and no AUTH mechanism on the handler")
        hooks = {name.replace("handle_", ""): getattr(handler, name) for name in names if name.startswith("handle_")}
        cached = _HOOKS[id(handler)] = (handler, hooks)
    return cached[1]


def init_smtp(
    protocol: SMTP,
    handler: Any,
    *,
    data_size_limit: int,
    hostname: str,
    ident: str,
    tls_context: ssl.SSLContext | None,
    require_starttls: bool,
    timeout: float,
    auth_require_tls: bool,
    proxy_protocol_timeout: float | None,
) -> None:
    """What `SMTP.__init__(protocol, handler, ..., auth_required=True)` sets, for these arguments (no authenticator,
    no auth_callback, no excluded mechanism, no call limit, SMTPUTF8 and decode_data off), on the running loop.

    The handler must have no `handle_EHLO` (aiosmtpd inspects its signature) and no `auth_*` mechanism."""
    if proxy_protocol_timeout is not None and proxy_protocol_timeout <= 0:
        raise ValueError("proxy_protocol_timeout must be > 0")
    loop = asyncio.get_running_loop()
    cls = type(protocol)
    protocol.__ident__ = ident
    protocol.loop = loop
    asyncio.StreamReaderProtocol.__init__(
        protocol,
        asyncio.StreamReader(loop=loop, limit=protocol.line_length_limit),
        client_connected_cb=protocol._cb_client_connected,
        loop=loop,
    )
    protocol.event_handler = handler
    protocol.data_size_limit = data_size_limit
    protocol.enable_SMTPUTF8 = False
    protocol._decode_data = False
    protocol.hostname = hostname
    protocol.tls_context = tls_context
    protocol.require_starttls = tls_context and require_starttls
    protocol._timeout_duration = timeout
    protocol._timeout_handle = None
    protocol._tls_handshake_okay = True
    protocol._tls_protocol = None
    protocol._original_transport = None
    protocol.session = None
    protocol.envelope = None
    protocol.transport = None
    protocol._handler_coroutine = None
    protocol._auth_require_tls = auth_require_tls
    protocol._proxy_timeout = proxy_protocol_timeout
    protocol._auth_callback = login_always_fail
    protocol._authenticator = None
    protocol._auth_required = True
    protocol._auth_methods = {
        getattr(function, "__auth_mechanism_name__", name.replace("__", "-")): _AuthMechAttr(
            MethodType(function, protocol), True
        )
        for name, function in _functions(cls, "auth_").items()
    }
    protocol._handle_hooks = _handle_hooks(handler)
    protocol._ehlo_hook_ver = None
    protocol._smtp_methods = {
        name: MethodType(function, protocol) for name, function in _functions(cls, "smtp_").items()
    }
    protocol._enforce_call_limit = False

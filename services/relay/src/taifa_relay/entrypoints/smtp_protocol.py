"""aiosmtpd's SMTP protocol, narrowed for submission: the command loop, AUTH against the cache, and DATA.

Kept thin: every decision is a call into `taifa_relay.domain.policy` or the session handler. The command loop
is aiosmtpd 1.4.6's own, with the contract's replies, forbidden-command detection, an error tarpit and a
per-client session cap; DATA is read in chunks (no buffering past the size limit, bare CR/LF refused).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto as sslproto
import collections
import logging
import ssl
from base64 import b64decode
from typing import TYPE_CHECKING, Any, AnyStr, cast

from aiosmtpd.proxy_protocol import get_proxy
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, TLSSetupException

from taifa_relay.adapters import metrics
from taifa_relay.domain import policy, replies
from taifa_relay.entrypoints.message_reader import read_message
from taifa_relay.entrypoints.session_state import ProtocolLimits, RelaySession, hook_names

if TYPE_CHECKING:
    from taifa_relay.entrypoints.handler import RelayHandler

log = logging.getLogger("taifa.relay.smtp")

# A TLS handshake (implicit TLS or STARTTLS) that takes longer is abandoned and the connection closed.
TLS_HANDSHAKE_SECONDS = 30.0

_ALLOWED_BEFORE_TLS = frozenset({"NOOP", "EHLO", "HELO", "STARTTLS", "QUIT"})


class RelaySMTP(SMTP):
    """One client connection on the submission (STARTTLS) or the implicit-TLS port."""

    def __init__(
        self,
        handler: RelayHandler,
        *,
        limits: ProtocolLimits,
        tls_context: ssl.SSLContext,
        implicit_tls: bool,
    ) -> None:
        self.line_length_limit = limits.max_line_length  # the StreamReader limit, read by SMTP.__init__
        self.command_size_limit = limits.max_command_length
        super().__init__(
            handler,
            data_size_limit=limits.max_message_bytes,
            hostname=limits.hostname,
            ident="ESMTP",
            tls_context=None if implicit_tls else tls_context,
            require_starttls=not implicit_tls,
            timeout=limits.idle_timeout,
            auth_required=True,
            auth_require_tls=True,
            proxy_protocol_timeout=limits.proxy_timeout,
        )
        # The transport itself is TLS on the implicit port, so AUTH may be offered at once.
        self._auth_require_tls = not implicit_tls
        # aiosmtpd keeps these in a class-wide dict that every EHLO grows; keep them per connection.
        self.command_size_limits = collections.defaultdict(lambda: self.command_size_limit)
        self.command_size_limits["MAIL"] = self.command_size_limit + 26
        self.limits = limits
        self.implicit_tls = implicit_tls
        # The implicit-TLS listener is plain TCP: this protocol starts TLS itself once the connection has been
        # admitted (and behind a PROXY-protocol balancer, once the PROXY header has been read), so connections
        # that never finish a handshake count against the admission limits like any other.
        self._implicit_tls_context = tls_context if implicit_tls else None
        self.handler: RelayHandler = handler
        self._errors = 0
        self._admitted = False
        self._closing = False
        self._held_lines: list[str] = []

    def __dir__(self) -> list[str]:
        return hook_names(type(self), ("smtp_", "auth_"))

    def _create_session(self) -> RelaySession:
        return RelaySession(self.loop)

    @property
    def relay_session(self) -> RelaySession:
        # No assert here: aiosmtpd's inspect.getmembers() reads every property before the session exists.
        return cast(RelaySession, self.session)

    @property
    def is_tls(self) -> bool:
        return self.implicit_tls or self._tls_protocol is not None

    def tls_version(self) -> str | None:
        if self.transport is None:
            return None
        ssl_object = self.transport.get_extra_info("ssl_object")
        return ssl_object.version() if ssl_object is not None else None

    # --- replies -------------------------------------------------------------------------------
    async def push(self, status: AnyStr) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else str(status)
        text = replies.REWRITES.get(text, text)
        if text[:1] in ("4", "5") and not self._closing:
            metrics.REJECTIONS.labels(reason=" ".join(text.split()[:2])).inc()
            self._errors += 1
            if self._errors >= self.limits.error_hard_limit:
                await super().push(text)
                await self.close_with(replies.TOO_MANY_ERRORS)
                return
            if self._errors > self.limits.error_soft_limit:
                await asyncio.sleep(self.limits.error_delay)
        if text[3:4] == "-":  # a continuation line (EHLO): sent with the final line, as one TLS record
            self._held_lines.append(text)
            return
        if self._held_lines:
            text = "\r\n".join([*self._held_lines, text])
            self._held_lines.clear()
        await super().push(text)

    async def close_with(self, status: str) -> None:
        """Send a final reply and close the connection (nothing more is read from it)."""
        self._closing = True
        if self.transport is not None and not self.transport.is_closing():
            self._writer.write(status.encode("ascii") + b"\r\n")
            self.transport.close()

    def _timeout_cb(self) -> None:
        log.info("idle timeout", extra={"client": self.relay_session.client_ip})
        self._closing = True
        if self.transport is not None and not self.transport.is_closing():
            self._writer.write(replies.IDLE_TIMEOUT.encode("ascii") + b"\r\n")
            self.transport.close()

    # --- connection lifecycle ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        previous = self.session
        super().connection_made(transport)
        if isinstance(previous, RelaySession) and self.session is not previous:
            # STARTTLS starts a fresh session (RFC 3207 §4.2) but the client is the same one.
            self.relay_session.client_ip = previous.client_ip
            self.relay_session.proxy_data = previous.proxy_data

    def connection_lost(self, error: Exception | None) -> None:
        if self._admitted:
            self._admitted = False
            self.handler.release(self)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        session = self.relay_session
        session.client_ip = str(session.peer[0]) if isinstance(session.peer, tuple) else "local"
        if self._proxy_timeout is not None:
            self._reset_timeout(self._proxy_timeout)
            session.proxy_data = await get_proxy(self._reader)
            if not session.proxy_data or session.proxy_data.src_addr is None:
                log.warning("invalid PROXY header", extra={"peer": session.client_ip})
                assert self.transport is not None
                self.transport.close()
                return
            session.client_ip = str(session.proxy_data.src_addr)
            self._reset_timeout()
        refusal = self.handler.admit(self)
        if refusal is not None:
            if self._implicit_tls_context is None:
                await self.close_with(refusal)
            elif self.transport is not None:
                # No plaintext reply where the client expects a TLS record: the refusal is the close itself.
                self._closing = True
                self.transport.close()
            return
        self._admitted = True
        if self._implicit_tls_context is not None and not await self._implicit_tls(self._implicit_tls_context):
            log.info("TLS handshake failed", extra={"client": session.client_ip})
            if self.transport is not None:
                self.transport.close()
            return
        await super().push(f"220 {self.hostname} ESMTP")
        while self.transport is not None and not self._closing:
            try:
                await self._next_command()
            except (asyncio.CancelledError, ConnectionResetError):
                self._writer.close()
                raise
            except TLSSetupException:
                log.info("TLS handshake failed", extra={"client": session.client_ip})
                if self.transport is not None:
                    self.transport.close()
                return
            except Exception as error:  # noqa: BLE001 - a bug must end in a reply, never in a dead session
                await self.push(await self.handle_exception(error))

    async def _next_command(self) -> None:
        try:
            line: bytes = await self._reader.readuntil()
        except asyncio.LimitOverrunError as error:
            # Too long: discard up to the end of the line without keeping it, then refuse.
            await self._reader.read(error.consumed)
            while True:
                try:
                    await self._reader.readuntil()
                    break
                except asyncio.LimitOverrunError as more:
                    await self._reader.read(more.consumed)
            await self.push(replies.LINE_TOO_LONG)
            return
        line = line.rstrip(b"\r\n")
        command_bytes, _, arg_bytes = line.partition(b" ")
        try:
            command = command_bytes.upper().decode("ascii")
            arg = arg_bytes.strip().decode("ascii") or None
        except UnicodeDecodeError:
            await self.push(replies.SYNTAX_ERROR)
            return
        if not command:
            await self.push(replies.SYNTAX_ERROR)
            return
        if command in replies.FORBIDDEN_COMMANDS:
            log.warning("forbidden command, closing", extra={"client": self.relay_session.client_ip})
            metrics.REJECTIONS.labels(reason="forbidden-command").inc()
            await self.close_with(replies.FORBIDDEN_COMMAND)
            return
        assert self.session is not None
        limit = self.command_size_limits[command] if self.session.extended_smtp else self.command_size_limit
        if len(line) + 2 > limit:
            await self.push(replies.LINE_TOO_LONG)
            return
        if not self._tls_handshake_okay and command != "QUIT":
            await self.push("554 5.7.0 Command refused due to lack of security")
            return
        # HELO too (TESTING.md A3): it only names the client; STARTTLS still has to come before anything else.
        if self.require_starttls and not self._tls_protocol and command not in _ALLOWED_BEFORE_TLS:
            await self.push(replies.STARTTLS_FIRST)
            return
        method = self._smtp_methods.get(command)
        if method is None:
            await self.push(replies.UNRECOGNISED_COMMAND)
            return
        self._reset_timeout()
        await method(arg)

    async def smtp_EHLO(self, hostname: str) -> None:
        await super().smtp_EHLO(hostname)
        # aiosmtpd adds 26 (for SIZE=) at every EHLO; keep it fixed however often EHLO is sent.
        self.command_size_limits["MAIL"] = self.command_size_limit + 26

    async def smtp_STARTTLS(self, arg: str | None) -> None:
        """STARTTLS through `loop.start_tls` (uvloop's native TLS when running on uvloop, several times cheaper
        per record than the pure-Python SSLProtocol aiosmtpd builds itself), with aiosmtpd's RFC 3207 rules:
        plaintext pipelined behind STARTTLS is discarded and the session starts afresh."""
        if arg:
            await self.push("501 5.5.4 Syntax: STARTTLS")
            return
        if self.tls_context is None or self._tls_protocol is not None:
            await self.push(replies.TLS_NOT_AVAILABLE)
            return
        await self.push("220 2.0.0 Ready to start TLS")
        await self._start_tls(self.tls_context, new_session=True)

    async def _implicit_tls(self, context: ssl.SSLContext) -> bool:
        """The implicit-TLS handshake, after admission; False when it failed or timed out.

        Reading stops first. When nothing has been read yet (the usual case: the ClientHello is still in the
        socket) the loop's own TLS takes over (uvloop's native TLS). When bytes were already read (behind a
        PROXY header, or a ClientHello that arrived before this task ran) they are handed to the TLS layer."""
        cast(asyncio.Transport, self.transport).pause_reading()
        if self._reader._buffer:  # type: ignore[attr-defined]
            return await self._tls_with_early_bytes(context)
        try:
            await self._start_tls(context, new_session=False)
        except TLSSetupException:
            return False
        return True

    async def _tls_with_early_bytes(self, context: ssl.SSLContext) -> bool:
        """Implicit TLS whose ClientHello already sits in our buffer (behind a PROXY header, or read before the
        handshake began): it is handed to the TLS layer instead of being dropped (unlike after STARTTLS)."""
        plain = cast(asyncio.Transport, self.transport)
        early = bytes(self._reader._buffer)  # type: ignore[attr-defined]
        self._reader._buffer.clear()  # type: ignore[attr-defined]
        waiter: asyncio.Future[None] = self.loop.create_future()
        tls = sslproto.SSLProtocol(self.loop, self, context, waiter, server_side=True, call_connection_made=False)
        plain.set_protocol(tls)
        tls.connection_made(plain)
        plain.resume_reading()
        if early:
            buffer = tls.get_buffer(len(early))
            buffer[: len(early)] = early
            tls.buffer_updated(len(early))
        try:
            await asyncio.wait_for(waiter, min(self.limits.idle_timeout, TLS_HANDSHAKE_SECONDS))
        except (ssl.SSLError, OSError, TimeoutError, ConnectionError):
            return False
        secure = tls._app_transport
        self._original_transport = plain
        self._tls_protocol = tls
        self.transport = secure
        self._reader._transport = secure  # type: ignore[attr-defined]
        self._writer._transport = secure  # type: ignore[attr-defined]
        self.relay_session.ssl = {"ssl_object": secure.get_extra_info("ssl_object")}
        return True

    async def _start_tls(self, context: ssl.SSLContext, *, new_session: bool) -> None:
        plain = cast(asyncio.Transport, self.transport)
        try:
            secure = await self.loop.start_tls(
                plain,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=min(self.limits.idle_timeout, TLS_HANDSHAKE_SECONDS),
            )
        except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as error:
            raise TLSSetupException() from error
        if secure is None:
            raise TLSSetupException()
        previous = self.relay_session
        self._original_transport = plain
        # aiosmtpd only tests this attribute for "TLS is on".
        self._tls_protocol = secure  # type: ignore[assignment]
        self.transport = secure
        self._reader._transport = secure  # type: ignore[attr-defined]
        self._writer._transport = secure  # type: ignore[attr-defined]
        # CVE-2024-34083 / RFC 3207 §4.2: nothing read in clear survives, no state carries over.
        self._reader._buffer.clear()  # type: ignore[attr-defined]
        if new_session:
            self._set_rset_state()  # type: ignore[no-untyped-call]
            self.session = self._create_session()
            session = self.relay_session
            session.peer = previous.peer
            session.client_ip = previous.client_ip
            session.proxy_data = previous.proxy_data
        self.relay_session.ssl = {
            "ssl_object": secure.get_extra_info("ssl_object"),
            "cipher": secure.get_extra_info("cipher"),
        }
        self._reset_timeout()

    # --- AUTH ----------------------------------------------------------------------------------
    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False)
        else:
            try:
                blob = b64decode(args[1].encode(), validate=True)
            except ValueError:
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        assert isinstance(blob, bytes)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        return await self.handler.authenticate(self, parts[1], parts[2])

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
            if login is MISSING:
                return AuthResult(success=False)
        else:
            try:
                login = b64decode(args[1].encode(), validate=True)
            except ValueError:
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False)
        assert isinstance(login, bytes) and isinstance(password, bytes)
        return await self.handler.authenticate(self, login, password)

    # --- transaction ---------------------------------------------------------------------------
    async def smtp_MAIL(self, arg: str | None) -> None:
        session = self.relay_session
        if session.authenticated and session.host_name:
            if not await self.handler.still_authorised(self, recheck=True):
                return
            if policy.is_null_sender(arg):
                await self.push(replies.NULL_SENDER_NOT_ALLOWED)
                return
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        if self.relay_session.authenticated and not await self.handler.still_authorised(self, recheck=False):
            return
        await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str | None) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push(replies.NEED_RCPT)
            return
        if arg:
            await self.push(replies.DATA_SYNTAX)
            return
        if not await self.handler.still_authorised(self, recheck=False):
            return
        await self.push(replies.DATA_START)
        outcome, leftover = await read_message(self._reader, self.limits, self.loop, on_data=self._reset_timeout)
        self._unread(leftover)
        if outcome == replies.DATA_TOO_SLOW:
            metrics.REJECTIONS.labels(reason="data-too-slow").inc()
            await self.close_with(replies.DATA_TOO_SLOW)
            return
        if outcome is None:
            return
        if isinstance(outcome, str):
            status = outcome
        else:
            status = await self.handler.deliver(self, bytes(outcome))
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(status)

    def _unread(self, data: bytes | bytearray) -> None:
        """Give back commands pipelined after the end of DATA (the same StreamReader buffer aiosmtpd clears
        after STARTTLS), so they are read as commands and never as part of the message."""
        if data:
            self._reader._buffer[0:0] = data  # type: ignore[attr-defined]

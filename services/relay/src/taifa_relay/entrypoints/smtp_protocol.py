"""aiosmtpd's SMTP protocol, narrowed for submission: the command loop and DATA (TLS in `tls_upgrade`, AUTH in
`smtp_auth`, the classes it builds on).

The only relay code that writes to the socket. Every decision is a call into the application
(`taifa_relay.application.submission` and `.sessions`), which returns the reply and what to do with the session;
this class acts on it. The command loop is aiosmtpd 1.4.6's own, with the replies of docs/api.md, forbidden-command
detection and an error tarpit; DATA is read in chunks (no buffering past the size limit, bare CR/LF refused).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import ssl
from typing import AnyStr

from aiosmtpd.proxy_protocol import get_proxy
from aiosmtpd.smtp import TLSSetupException

from taifa_relay.adapters import metrics
from taifa_relay.application.sessions import SessionRegistry
from taifa_relay.application.submission import Accepted, Close, Decision, LoggedOut
from taifa_relay.domain import replies
from taifa_relay.entrypoints.handler import RelayHandler
from taifa_relay.entrypoints.message_reader import read_message
from taifa_relay.entrypoints.session_state import (
    ProtocolLimits,
    RelaySession,
    forget_login,
    hook_names,
    memoized_getaddr,
)
from taifa_relay.entrypoints.smtp_auth import AuthenticatingSMTP
from taifa_relay.entrypoints.smtp_setup import init_smtp

log = logging.getLogger("taifa.relay.smtp")
session_log = logging.getLogger("taifa.relay.session")

_ALLOWED_BEFORE_TLS = frozenset({"NOOP", "EHLO", "HELO", "STARTTLS", "QUIT"})
# The recipients refused for a limit (452) a session may get before they count as its errors (Postfix's
# smtpd_recipient_overshoot_limit): a large message's overflow is not the client's error, an endless one is.
RECIPIENT_OVERSHOOT_LIMIT = 1000
# RFC 5321: a command line is printable ASCII and SP; its CRLF is stripped before this is asked.
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


class RelaySMTP(AuthenticatingSMTP):
    """One client connection on the submission (STARTTLS) or the implicit-TLS port."""

    def __init__(
        self,
        handler: RelayHandler,
        *,
        sessions: SessionRegistry[RelaySMTP],
        limits: ProtocolLimits,
        tls_context: ssl.SSLContext,
        implicit_tls: bool,
    ) -> None:
        self.line_length_limit = limits.max_line_length  # the StreamReader limit, read by SMTP.__init__
        self.command_size_limit = limits.max_command_length
        # aiosmtpd's SMTP.__init__(handler, ..., auth_required=True), without its per-connection reflection.
        init_smtp(
            self,
            handler,
            data_size_limit=limits.max_message_bytes,
            hostname=limits.hostname,
            ident="ESMTP",
            tls_context=None if implicit_tls else tls_context,
            require_starttls=not implicit_tls,
            timeout=limits.idle_timeout,
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
        self.submission = handler.submission
        self.sessions = sessions
        self._errors = 0
        self._overshoot = 0
        self._admitted = False
        self._closing = False
        self._in_mail = False  # aiosmtpd's MAIL is running: its SIZE= refusal is a message refused (usage)
        self.delivering = False  # the message is on its way to the upstream (a drain lets it finish)
        self._drain_requested = False

    def __dir__(self) -> list[str]:
        return hook_names(type(self), ("smtp_", "auth_"))

    def _create_session(self) -> RelaySession:
        return RelaySession(self.loop)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        return memoized_getaddr(super()._getaddr, self.local_part_limit, arg)

    @property
    def is_tls(self) -> bool:
        return self.implicit_tls or self._tls_protocol is not None

    # --- replies -------------------------------------------------------------------------------
    async def push(self, status: AnyStr) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else str(status)
        text = replies.REWRITES.get(text, text)
        if self._in_mail and text == replies.MESSAGE_TOO_BIG and self.relay_session.authenticated:
            text = self.submission.message_refused(self.relay_session.state, text)  # SIZE= over the limit
        if text[:1] in ("4", "5") and not self._closing:
            metrics.REJECTIONS.labels(reason=" ".join(text.split()[:2])).inc()
            if text in replies.NOT_CLIENT_ERRORS and self._overshoot < RECIPIENT_OVERSHOOT_LIMIT:
                self._overshoot += 1  # a recipient refused for a limit: past the bound, counted like other errors
                await self.write_reply(text)
                return
            self._errors += 1
            if self._errors >= self.limits.error_hard_limit:
                await self.write_reply(text)
                await self.close_with(replies.TOO_MANY_ERRORS)
                return
            if self._errors > self.limits.error_soft_limit:
                await asyncio.sleep(self.limits.error_delay)
        await self.write_reply(text)

    async def close_with(self, status: str) -> None:
        """Send a final reply and close the connection (nothing more is read from it)."""
        self._closing = True
        if self.transport is not None and not self.transport.is_closing():
            self._writer.write(status.encode("ascii") + b"\r\n")
            self.transport.close()

    # --- drain (SIGTERM) -----------------------------------------------------------------------
    def in_transaction(self) -> bool:
        """A message is under way: MAIL accepted and its DATA not answered yet, or its delivery in flight."""
        return self.delivering or (self.envelope is not None and self.envelope.mail_from is not None)

    async def request_drain(self) -> None:
        """The relay is stopping: an idle session is closed now (421 4.3.2); one in a transaction finishes its
        message and is closed after the reply, before any new transaction."""
        self._drain_requested = True
        if not self.in_transaction():
            await self._close_drained()

    async def _close_drained(self) -> None:
        """421 4.3.2 and the slot given back at once: a TLS close waits for the client's close_notify, which an idle
        client (a pooled connection) may never send; the drain must not wait for it."""
        await self.close_with(replies.SHUTTING_DOWN)
        self._release_slot()

    def _timeout_cb(self) -> None:
        log.info("idle timeout", extra={"client": self.relay_session.state.client_ip})
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
            self.relay_session.state = previous.state.for_same_client()
            self.relay_session.proxy_data = previous.proxy_data

    def connection_lost(self, error: Exception | None) -> None:
        self._release_slot()
        super().connection_lost(error)

    def _release_slot(self) -> None:
        """Give the admitted connection's slot back (once: from `connection_lost` or the end of `_handle_client`)."""
        if self._admitted:
            self._admitted = False
            self.sessions.release(self, self.relay_session.state)
            metrics.SESSIONS.dec()

    async def _handle_client(self) -> None:
        # The slot is also given back when the handler ends: a connection reset during a TLS handshake never
        # reaches `connection_lost` (the loop's TLS layer drops it), and its slot was held for good.
        try:
            await self._serve_client()
        finally:
            self._release_slot()

    async def _serve_client(self) -> None:
        session = self.relay_session
        state = session.state
        state.client_ip = str(session.peer[0]) if isinstance(session.peer, tuple) else "local"
        if self.limits.proxy_from(state.client_ip):  # PROXY protocol on, and the peer a trusted balancer
            # Only the load balancer (TAIFA_RELAY_PROXY_TRUSTED_CIDRS) names the client: anyone else's header would
            # choose the address that allowlists and throttles see. Others are served as the clients they are.
            self._reset_timeout(self._proxy_timeout)
            session.proxy_data = await get_proxy(self._reader)
            if not session.proxy_data:
                log.warning("invalid PROXY header", extra={"peer": state.client_ip})
                assert self.transport is not None
                self.transport.close()
                return
            if session.proxy_data.src_addr is not None:
                state.client_ip = str(session.proxy_data.src_addr)
            # else v1 UNKNOWN or v2 LOCAL: the balancer's own connection (a health check), served as itself
            self._reset_timeout()
        refusal = self.sessions.admit(self, state)
        if refusal is not None:
            if self._implicit_tls_context is None:
                await self.close_with(refusal)
            elif self.transport is not None:
                # No plaintext reply where the client expects a TLS record: the refusal is the close itself.
                self._closing = True
                self.transport.close()
            return
        self._admitted = True
        metrics.SESSIONS.inc()
        metrics.SESSIONS_BY_PORT["smtps" if self.implicit_tls else "submission"].inc()
        if self._implicit_tls_context is not None and not await self._implicit_tls(self._implicit_tls_context):
            log.info("TLS handshake failed", extra={"client": state.client_ip})
            if self.transport is not None:
                self.transport.close()
            return
        await self.write_reply(f"220 {self.hostname} ESMTP")
        while self.transport is not None and not self._closing:
            if self._drain_requested and not self.in_transaction():
                await self._close_drained()  # the message is answered: no new transaction
                return
            try:
                await self._next_command()
            except (asyncio.CancelledError, ConnectionResetError):
                self._writer.close()
                raise
            except TLSSetupException:
                log.info("TLS handshake failed", extra={"client": state.client_ip})
                if self.transport is not None:
                    self.transport.close()
                return
            except Exception as error:  # noqa: BLE001 - a bug must end in a reply, never in a dead session
                await self.push(await self.handle_exception(error))

    async def _next_command(self) -> None:
        line = await self._read_line()
        if line is None:
            return
        line = line.rstrip(b"\r\n")
        if _CONTROL.search(line):
            # A CR inside `MAIL FROM:<"ceo@bank.example\r"@own.example>` passes aiosmtpd's reading and the
            # sender check, and the upstream client's parser stops at it: refused before anything reads it.
            await self.push(replies.SYNTAX_ERROR)
            return
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
            log.warning("forbidden command, closing", extra={"client": self.relay_session.state.client_ip})
            metrics.REJECTIONS.labels(reason="forbidden-command").inc()
            await self.close_with(replies.FORBIDDEN_COMMAND)
            return
        assert self.session is not None
        limit = self.command_size_limits[command] if self.session.extended_smtp else self.command_size_limit
        if len(line) + 2 > limit:
            await self.push(replies.LINE_TOO_LONG)
            return
        if not self._tls_handshake_okay and command != "QUIT":
            await self.push(replies.NOT_SECURED)
            return
        # HELO too (docs/api.md: STARTTLS first on port 587): it only names the client; STARTTLS still comes first.
        if self.require_starttls and not self._tls_protocol and command not in _ALLOWED_BEFORE_TLS:
            await self.push(replies.STARTTLS_FIRST)
            return
        method = self._smtp_methods.get(command)
        if method is None:
            await self.push(replies.UNRECOGNISED_COMMAND)
            return
        self._reset_timeout()
        await method(arg)

    async def _refuse(self, decision: Decision) -> None:
        """Act on a decision that refused the command: count it, forget a revoked login, answer or close."""
        metrics.count_outcomes(decision.outcomes)
        if isinstance(decision, LoggedOut):
            self._forget_login()
        if isinstance(decision, Close):
            await self.close_with(decision.reply)
        else:
            await self.push(decision.reply)

    # --- transaction ---------------------------------------------------------------------------
    async def smtp_MAIL(self, arg: str | None) -> None:
        session = self.relay_session
        if session.authenticated and session.host_name:
            refusal = await self.submission.before_mail(session.state, arg)
            if refusal is not None:
                await self._refuse(refusal)
                return
        self._in_mail = True
        try:
            await super().smtp_MAIL(arg)
        finally:
            self._in_mail = False

    async def smtp_RCPT(self, arg: str | None) -> None:
        session = self.relay_session
        if session.authenticated:
            refusal = await self.submission.before_rcpt_or_data(session.state)
            if refusal is not None:
                await self._refuse(refusal)
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
        refusal = await self.submission.before_rcpt_or_data(self.relay_session.state)
        if refusal is not None:
            await self._refuse(refusal)
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
            status = self.submission.message_refused(self.relay_session.state, outcome)
        else:
            self.delivering = True
            try:
                status = await self._deliver(bytes(outcome))
            finally:
                self.delivering = False
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(status)

    async def _deliver(self, message: bytes) -> str:
        """Ask the application to relay the message; the reply for DATA."""
        session, envelope = self.relay_session, self.envelope
        assert envelope is not None and envelope.mail_from is not None
        decision = await self.submission.deliver(
            session.state,
            helo=session.host_name,
            tls_version=self.tls_version(),
            sender=envelope.mail_from,
            recipients=list(envelope.rcpt_tos),
            message=message,
        )
        metrics.count_outcomes(decision.outcomes)
        if isinstance(decision, Accepted):
            metrics.MESSAGES.inc()
            metrics.MESSAGE_BYTES.inc(len(message))
        elif isinstance(decision, LoggedOut):
            self._forget_login()
        return decision.reply

    def _forget_login(self) -> None:
        """The application logged the session out (revoked): aiosmtpd's login and the transaction go too."""
        forget_login(self.relay_session)
        self._set_rset_state()  # type: ignore[no-untyped-call]

    async def handle_exception(self, error: Exception) -> str:
        """A bug in a command's handling: logged with its traceback, answered with a temporary error."""
        session_log.error("session error", exc_info=error)
        return replies.INTERNAL_ERROR

    def _unread(self, data: bytes | bytearray) -> None:
        """Give back commands pipelined after the end of DATA (the same StreamReader buffer aiosmtpd clears
        after STARTTLS), so they are read as commands and never as part of the message."""
        if data:
            self._reader._buffer[0:0] = data  # type: ignore[attr-defined]

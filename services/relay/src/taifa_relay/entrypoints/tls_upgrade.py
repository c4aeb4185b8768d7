"""STARTTLS and implicit TLS for the relay's SMTP protocol, through the event loop's own TLS (uvloop's native TLS
when running on uvloop), with aiosmtpd's RFC 3207 rules. Split from `smtp_protocol` to keep each module short."""

from __future__ import annotations

import asyncio
import asyncio.sslproto as sslproto
import ssl
from typing import cast

from aiosmtpd.smtp import SMTP, TLSSetupException, syntax

from taifa_relay.domain import replies
from taifa_relay.entrypoints.session_state import ProtocolLimits, RelaySession

# A TLS handshake (implicit TLS or STARTTLS) that takes longer is abandoned and the connection closed.
TLS_HANDSHAKE_SECONDS = 30.0


class TLSUpgradingSMTP(SMTP):
    """aiosmtpd's SMTP whose TLS upgrades use `loop.start_tls`; `RelaySMTP` is the class actually served."""

    limits: ProtocolLimits

    @property
    def relay_session(self) -> RelaySession:
        # No assert here: aiosmtpd's inspect.getmembers() reads every property before the session exists.
        return cast(RelaySession, self.session)

    def tls_version(self) -> str | None:
        if self.transport is None:
            return None
        ssl_object = self.transport.get_extra_info("ssl_object")
        return ssl_object.version() if ssl_object is not None else None

    async def write_reply(self, text: str) -> None:
        """aiosmtpd's `SMTP.push` (SMTPUTF8 off): the reply in ASCII with its CRLF in one write, then `drain()`, which
        is awaited only when it could do something (writing paused, the connection lost or closing, the reader
        failed): otherwise it returns at once, and its two coroutines were ~2 us per reply, ten replies a message.
        Without aiosmtpd's debug echo of every reply (its logger is kept to warnings)."""
        writer = self._writer
        writer.write(text.encode("ascii") + b"\r\n")
        if (
            self._paused  # type: ignore[attr-defined]
            or self._connection_lost  # type: ignore[attr-defined]
            or writer.transport.is_closing()
            or self._reader.exception() is not None
        ):
            await writer.drain()

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        """aiosmtpd 1.4.6's EHLO for the relay's settings (no EHLO hook, SMTPUTF8 off): the same session reset and
        keywords (STARTTLS before TLS, AUTH once TLS is on or on the implicit-TLS port), its lines pushed as one
        reply (one write, one TLS record) instead of one push per line. The MAIL line limit stays the command limit
        + 26 for SIZE= however often EHLO is sent (aiosmtpd adds 26 each time)."""
        if not hostname:
            await self.push("501 Syntax: EHLO hostname")
            return
        self._set_rset_state()  # type: ignore[no-untyped-call]
        session = self.relay_session
        session.extended_smtp = True
        lines = [f"250-{self.hostname}"]
        if self.data_size_limit:
            lines.append(f"250-SIZE {self.data_size_limit}")
        lines.append("250-8BITMIME")
        if self.tls_context and not self._tls_protocol:
            lines.append("250-STARTTLS")
        if not self._auth_require_tls or self._tls_protocol:
            lines.append("250-AUTH " + " ".join(sorted(self._auth_methods)))
        session.host_name = hostname
        lines.append("250 HELP")
        self.command_size_limits["MAIL"] = self.command_size_limit + 26
        await self.write_reply("\r\n".join(lines))

    async def smtp_STARTTLS(self, arg: str | None) -> None:
        """STARTTLS through `loop.start_tls` (uvloop's native TLS when running on uvloop, several times cheaper
        per record than the pure-Python SSLProtocol aiosmtpd builds itself), with aiosmtpd's RFC 3207 rules:
        plaintext pipelined behind STARTTLS is discarded and the session starts afresh."""
        if arg:
            await self.push(replies.STARTTLS_SYNTAX)
            return
        if self.tls_context is None or self._tls_protocol is not None:
            await self.push(replies.TLS_NOT_AVAILABLE)
            return
        await self.push(replies.READY_FOR_TLS)
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
            session.state = previous.state.for_same_client()
            session.proxy_data = previous.proxy_data
        self.relay_session.ssl = {
            "ssl_object": secure.get_extra_info("ssl_object"),
            "cipher": secure.get_extra_info("cipher"),
        }
        self._reset_timeout()

"""The baseline for `make bench-relay`: aiosmtpd with the same TLS and AUTH dialogue but no checks at all.

`python bare_server.py PORT CERT KEY [aiosmtpd|native]`. What it does, exactly: stock `aiosmtpd.smtp.SMTP`
on uvloop (the relay's loop too), STARTTLS required (TLS 1.2+, the relay's ECDSA certificate), AUTH required
and any AUTH PLAIN/LOGIN accepted without a lookup, MAIL/RCPT answered by aiosmtpd's own code (its address
parsing, no policy), DATA read by aiosmtpd line by line, answered `250 OK` and the message dropped: no
upstream, no Redis, no logging, no metrics. Each reply is one write (EHLO: one per line).

TLS after STARTTLS: with `aiosmtpd` (the default, the issue's "bare aiosmtpd server") it is aiosmtpd's own
layer, asyncio's pure-Python `SSLProtocol`; with `native` it is `loop.start_tls`, uvloop's TLS in C, which is
what the relay uses: the fairer baseline for the relay's own work (cheaper per record, so the ratio drops).
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
from typing import Any

import uvloop
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session, TLSSetupException


class AcceptAll:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"


def accept_any(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
    return AuthResult(success=True)


class NativeTLS(SMTP):
    """Stock aiosmtpd except that STARTTLS goes through `loop.start_tls` (as in the relay)."""

    async def smtp_STARTTLS(self, arg: str) -> None:
        if arg or self.tls_context is None or self._tls_protocol is not None:
            await self.push("501 Syntax: STARTTLS")
            return
        await self.push("220 Ready to start TLS")
        plain = self.transport
        try:
            secure = await self.loop.start_tls(plain, self, self.tls_context, server_side=True)  # type: ignore[arg-type]
        except (ssl.SSLError, OSError) as error:
            raise TLSSetupException() from error
        self._original_transport = plain
        self._tls_protocol = secure  # type: ignore[assignment]
        self.transport = secure
        self._reader._transport = secure  # type: ignore[attr-defined]
        self._writer._transport = secure  # type: ignore[attr-defined]
        self._reader._buffer.clear()  # type: ignore[attr-defined]
        peer = self.session.peer if self.session else None
        self._set_rset_state()  # type: ignore[no-untyped-call]
        self.session = self._create_session()
        self.session.peer = peer


async def main(port: int, cert: str, key: str, tls_layer: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    handler = AcceptAll()
    loop = asyncio.get_running_loop()
    protocol = NativeTLS if tls_layer == "native" else SMTP

    def factory() -> SMTP:
        return protocol(
            handler,
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            authenticator=accept_any,
            hostname="bare.test",
        )

    server = await loop.create_server(factory, "127.0.0.1", port)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "aiosmtpd"))

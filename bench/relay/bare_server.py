"""The baseline for `make bench-relay`: aiosmtpd with the same TLS and AUTH dialogue but no checks at all.

`python bare_server.py PORT CERT KEY`: STARTTLS required, any AUTH accepted, every message answered 250
and dropped. Runs on uvloop like the relay, so the comparison is of the relay's own work.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
from typing import Any

import uvloop
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session


class AcceptAll:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"


def accept_any(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
    return AuthResult(success=True)


async def main(port: int, cert: str, key: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    handler = AcceptAll()
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        return SMTP(
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
    uvloop.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))

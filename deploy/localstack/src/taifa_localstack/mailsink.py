"""The local upstream mail sink: an aiosmtpd server that stores every message it accepts in a Maildir.

`python -m taifa_localstack.mailsink --host 127.0.0.1 --port N --maildir DIR [--tls-cert F --tls-key F]`
With a certificate it offers STARTTLS (TLS 1.2+). It stands in for the upstream MTA in `make dev`, in
the relay's tests and in its benchmark; it relays nothing further.
"""

from __future__ import annotations

import argparse
import asyncio
import mailbox
import signal
import ssl
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class MaildirHandler:
    """Stores each message (as received, with envelope headers for inspection) in a Maildir."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = mailbox.Maildir(maildir, create=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        envelope_headers = (
            f"X-Sink-Mail-From: <{envelope.mail_from}>\r\n"
            f"X-Sink-Rcpt-To: {', '.join(f'<{r}>' for r in envelope.rcpt_tos)}\r\n"
        ).encode("utf-8", "surrogateescape")
        self.maildir.add(envelope_headers + content)
        return "250 2.0.0 OK: stored"


def _tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def serve(host: str, port: int, maildir: Path, tls: ssl.SSLContext | None) -> None:
    handler = MaildirHandler(maildir)
    loop = asyncio.get_running_loop()

    def factory() -> Any:
        return SMTP(handler, hostname="mailsink.local", tls_context=tls, data_size_limit=64 * 2**20)

    server = await loop.create_server(factory, host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"mailsink listening on {host}:{port}, storing in {maildir}", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m taifa_localstack.mailsink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--maildir", type=Path, required=True)
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    tls = _tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port, args.maildir, tls))
    else:
        uvloop.run(serve(args.host, args.port, args.maildir, tls))


if __name__ == "__main__":
    main()

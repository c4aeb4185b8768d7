"""The local upstream mail sink: an aiosmtpd server that stores every message it accepts in a Maildir.

`python -m taifa_localstack.mailsink --host 127.0.0.1 --port N --maildir DIR [--tls-cert F --tls-key F]`
With a certificate it offers STARTTLS (TLS 1.2+). It stands in for the upstream MTA in `make dev`, in
the relay's tests and in its benchmark; it relays nothing further.

Messages are written the Maildir way (a file in tmp/, renamed into new/, so a reader never sees half a
message) but without `mailbox.Maildir.add`'s fsync: the sink is a local stand-in, not a durable MTA, and an
fsync per message blocked its event loop for about a millisecond, which the relay's benchmark counted as
relay cost. Files are named like `mailbox.Maildir` names them and read back with `mailbox.Maildir`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import mailbox
import os
import signal
import socket
import ssl
import time
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

END_OF_DATA = b"\r\n.\r\n"
READ_CHUNK = 65536


class MaildirHandler:
    """Stores each message (as received, with envelope headers for inspection) in a Maildir."""

    def __init__(self, maildir: Path) -> None:
        mailbox.Maildir(maildir, create=True)  # creates tmp/, new/ and cur/
        self.tmp = maildir / "tmp"
        self.new = maildir / "new"
        host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
        self._suffix = f"P{os.getpid()}Q{{}}.{host}"
        self._count = itertools.count()

    def store(self, data: bytes) -> str:
        """Write one message into new/ (through tmp/, never overwriting); its Maildir key."""
        now = time.time()
        key = f"{int(now)}.M{int(now % 1 * 1e6)}" + self._suffix.format(next(self._count))
        tmp = self.tmp / key
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.rename(tmp, self.new / key)
        return key

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        """Offer PIPELINING (RFC 2920) as a real upstream MTA does: aiosmtpd reads commands one line at a
        time from its buffer, so a pipelined envelope is answered in order."""
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        envelope_headers = (
            f"X-Sink-Mail-From: <{envelope.mail_from}>\r\n"
            f"X-Sink-Rcpt-To: {', '.join(f'<{r}>' for r in envelope.rcpt_tos)}\r\n"
        ).encode("utf-8", "surrogateescape")
        self.store(envelope_headers + content)
        return "250 2.0.0 OK: stored"


class SinkSMTP(SMTP):
    """aiosmtpd's server with DATA read in chunks up to CRLF.CRLF instead of line by line (that loop was
    most of the sink's CPU per message). Same replies as aiosmtpd; commands pipelined behind the end of
    data are given back to the command reader."""

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        limit = self.data_size_limit
        buf = bytearray(b"\r\n")  # so that an empty message matches the same terminator
        scan, too_much = 0, False
        while True:
            chunk = await self._reader.read(READ_CHUNK)
            if not chunk:
                return  # the client went away
            buf += chunk
            end = buf.find(END_OF_DATA, scan)
            if end >= 0:
                break
            if limit and len(buf) > limit + len(END_OF_DATA):
                too_much = True
                del buf[: -(len(END_OF_DATA) - 1)]
            scan = max(0, len(buf) - (len(END_OF_DATA) - 1))
        leftover = buf[end + len(END_OF_DATA) :]
        if leftover:
            self._reader._buffer[0:0] = leftover  # type: ignore[attr-defined]
        del buf[end + 2 :]
        content = bytes(buf).replace(b"\r\n.", b"\r\n")[2:]  # undo dot-stuffing (RFC 5321 §4.5.2)
        if too_much or (limit and len(content) > limit):
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push("552 Error: Too much mail data")
            return
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)


def _tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def serve(host: str, port: int, maildir: Path, tls: ssl.SSLContext | None) -> None:
    handler = MaildirHandler(maildir)
    loop = asyncio.get_running_loop()

    def factory() -> Any:
        return SinkSMTP(handler, hostname="mailsink.local", tls_context=tls, data_size_limit=64 * 2**20)

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

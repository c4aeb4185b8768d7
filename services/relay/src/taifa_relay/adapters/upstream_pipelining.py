"""Upstream transactions with PIPELINING (RFC 2920), when the upstream offers it.

aiosmtplib (5.1) reads one reply per command sent and drops bytes that arrive while no command waits, so it cannot
pipeline. The relay's upstream client therefore lets aiosmtplib connect (greeting, EHLO, STARTTLS with its checks,
EHLO again) and, when the upstream offers PIPELINING, takes the connection over: the transport's protocol becomes
`ReplyReader`, which keeps every reply in order, and `PipelinedConnection` runs the transactions on it.

A transaction is the same all-or-nothing one as without pipelining: MAIL and every RCPT in one write, with DATA
behind them when there is one recipient (a refused MAIL or RCPT then makes the upstream refuse DATA: nothing can be
sent); with several recipients DATA goes only once every RCPT was accepted, so a partly refused envelope is reset
(RSET) and never delivered to the others. Then the dot-stuffed body and its end in one write. Two writes and two
waits per message instead of four.
"""

from __future__ import annotations

import asyncio
import collections

from aiosmtplib import (
    SMTPDataError,
    SMTPResponse,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from aiosmtplib.email import quote_address

MAX_REPLY_BYTES = 65536
CLOSING = 421  # "service not available, closing transmission channel": the upstream ends the connection


class ReplyReader(asyncio.Protocol):
    """Every SMTP reply the upstream sends, parsed and kept in order until read."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buffer = bytearray()
        self._replies: collections.deque[SMTPResponse] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.lost: Exception | None = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            reply = self._parse()
            if reply is None:
                break
            self._replies.append(reply)
        if len(self._buffer) > MAX_REPLY_BYTES:
            self._fail(SMTPServerDisconnected("upstream reply too long"))
        self._wake()

    def _parse(self) -> SMTPResponse | None:
        lines: list[bytes] = []
        offset = 0
        while True:
            end = self._buffer.find(b"\n", offset)
            if end < 0:
                return None
            line = bytes(self._buffer[offset : end + 1])
            offset = end + 1
            lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                break
        try:
            code = int(self._buffer[:3])
        except ValueError:
            code = 0
        del self._buffer[:offset]
        return SMTPResponse(code, b"\n".join(lines).decode("utf-8", "surrogateescape"))

    def eof_received(self) -> bool:
        self._fail(SMTPServerDisconnected("upstream closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(SMTPServerDisconnected("upstream connection lost"))

    def _fail(self, error: Exception) -> None:
        if self.lost is None:
            self.lost = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self, seconds: float) -> SMTPResponse:
        """The next reply; SMTPServerDisconnected when the connection ended first, SMTPTimeoutError after
        `seconds`."""
        deadline = self._loop.time() + seconds  # one bound for the whole reply, however it is split into segments
        while not self._replies:
            if self.lost is not None:
                raise self.lost
            waiter = self._waiter = self._loop.create_future()
            # A timer on the waiter rather than asyncio.wait_for (its extra future and callbacks, per reply).
            timer = self._loop.call_at(deadline, _expire, waiter)
            try:
                await waiter
            except TimeoutError:
                raise SMTPTimeoutError("upstream reply timed out") from None
            finally:
                timer.cancel()
                self._waiter = None
        return self._replies.popleft()


# address -> aiosmtplib's quote_address(address) in ASCII. It parses with email.utils.parseaddr (about 1.5 % of the
# relay's CPU in load (a) of bench/relay); a pure function of the address, and clients repeat theirs, so a memo is
# exact. Bounded, emptied when full; an address it refuses raises every time (nothing is remembered for it).
_QUOTED: dict[str, bytes] = {}
_MAX_QUOTED = 4096


def quoted(address: str) -> bytes:
    """`quote_address(address).encode("ascii")`, remembered."""
    found = _QUOTED.get(address)
    if found is None:
        found = quote_address(address).encode("ascii")
        if len(_QUOTED) >= _MAX_QUOTED:
            _QUOTED.clear()
        _QUOTED[address] = found
    return found


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class ClosedBeforeMail(Exception):
    """The connection was found closed at MAIL: nothing of the message reached the upstream."""


class PipelinedConnection:
    """One upstream connection taken over from aiosmtplib after EHLO (and STARTTLS)."""

    def __init__(self, transport: asyncio.Transport, timeout: float) -> None:
        self._transport = transport
        self._timeout = timeout
        self._replies = ReplyReader(asyncio.get_running_loop())
        transport.set_protocol(self._replies)

    @property
    def is_connected(self) -> bool:
        return self._replies.lost is None and not self._transport.is_closing()

    def close(self) -> None:
        if not self._transport.is_closing():
            self._transport.close()

    async def quit(self) -> None:
        self._transport.write(b"QUIT\r\n")
        await self._replies.read(self._timeout)
        self.close()

    async def rset(self) -> None:
        if not self.is_connected:
            raise SMTPServerDisconnected("upstream connection closed")
        self._transport.write(b"RSET\r\n")
        await self._replies.read(self._timeout)

    async def transaction(self, sender: str, recipients: list[str], stuffed_body: bytes) -> SMTPResponse:
        """MAIL, RCPT..., DATA and the body (already dot-stuffed, CRLF-terminated). Raises SMTPResponseException
        with the first refusal (the envelope was not delivered; the caller resets it), ClosedBeforeMail when the
        connection was already gone, SMTPServerDisconnected / SMTPTimeoutError otherwise."""
        commands = [b"MAIL FROM:" + quoted(sender) + b"\r\n"]
        commands += [b"RCPT TO:" + quoted(recipient) + b"\r\n" for recipient in recipients]
        with_data = len(recipients) == 1
        if with_data:
            commands.append(b"DATA\r\n")
        if not self.is_connected:
            raise ClosedBeforeMail
        self._transport.write(b"".join(commands))
        try:
            mail = await self._replies.read(self._timeout)
        except SMTPServerDisconnected:
            raise ClosedBeforeMail from None
        if mail.code == CLOSING:  # the upstream is closing this connection (a restart): nothing of it began
            raise ClosedBeforeMail
        envelope = [mail] + [await self._replies.read(self._timeout) for _ in recipients]
        # 251 ("not local; will forward", RFC 5321) accepts a recipient as 250 does.
        refused = next((reply for reply in envelope if reply.code not in (250, 251)), None)
        if with_data:
            start = await self._replies.read(self._timeout)
            if refused is not None and start.code == 354:
                # An upstream that starts DATA after refusing the envelope: nothing may be sent on it (an empty
                # body would deliver to the recipients it did accept), so the session ends; the refusal stands.
                self.close()
            if refused is None and start.code != 354:
                raise SMTPDataError(start.code, start.message)
        if refused is not None:
            raise SMTPResponseException(refused.code, refused.message)
        if not with_data:
            self._transport.write(b"DATA\r\n")
            start = await self._replies.read(self._timeout)
            if start.code != 354:
                raise SMTPDataError(start.code, start.message)
        self._transport.write(stuffed_body + b".\r\n")
        response = await self._replies.read(self._timeout)
        if response.code != 250:
            raise SMTPDataError(response.code, response.message)
        return response

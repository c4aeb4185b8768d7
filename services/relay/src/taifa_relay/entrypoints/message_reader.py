"""Reads one message after DATA: in chunks, up to CRLF.CRLF, never keeping more than the size limit.

Refuses bare CR/LF (SMTP smuggling, `550 5.6.0`), over-long lines and oversized messages only after the end
of data (RFC 5321 §4.2.5), and cuts clients below the minimum data rate. Pure protocol code: the caller
replies and gives back whatever followed the end of data (pipelined commands).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from taifa_relay.domain import policy, replies

if TYPE_CHECKING:
    from taifa_relay.entrypoints.session_state import ProtocolLimits

READ_CHUNK = 65536
EOD = b"\r\n.\r\n"


async def read_message(
    reader: asyncio.StreamReader,
    limits: ProtocolLimits,
    loop: asyncio.AbstractEventLoop,
    *,
    on_data: Callable[[], None],
) -> tuple[bytearray | str | None, bytes]:
    """(the unstuffed message, or a refusal reply, or None if the client is gone; the bytes after the end).

    `replies.DATA_TOO_SLOW` means the client fell below the minimum rate: the caller closes the connection.
    """
    # A leading CRLF lets an empty message (".\r\n" at once) match the same terminator.
    buf = bytearray(b"\r\n")
    scan = 0
    received = 0
    overflow = False
    started = loop.time()
    while True:
        deadline = loop.time() + limits.idle_timeout
        if limits.min_data_rate > 0:
            deadline = min(deadline, started + limits.data_rate_grace + received / limits.min_data_rate)
        try:
            async with asyncio.timeout_at(deadline):
                chunk = await reader.read(READ_CHUNK)
        except TimeoutError:
            return replies.DATA_TOO_SLOW, b""
        if not chunk:
            return None, b""
        on_data()
        received += len(chunk)
        buf += chunk
        end = buf.find(EOD, scan)
        if end >= 0:
            leftover = bytes(buf[end + len(EOD) :])
            if overflow:
                return replies.MESSAGE_TOO_BIG, leftover
            del buf[end + 2 :]
            break
        if overflow or len(buf) > limits.max_message_bytes + len(EOD):
            # Over the limit: keep only the bytes that could begin the terminator.
            overflow = True
            del buf[: -(len(EOD) - 1)]
            scan = 0
        else:
            scan = max(0, len(buf) - (len(EOD) - 1))
    return _checked(buf, limits), leftover


def _checked(buf: bytearray, limits: ProtocolLimits) -> bytearray | str:
    if policy.has_bare_newline(buf):
        return replies.BARE_NEWLINE
    if len(buf) > limits.max_line_length and policy.has_long_line(buf, limits.max_line_length):
        return replies.LINE_TOO_LONG
    # Undo dot-stuffing (RFC 5321 §4.5.2), then drop the leading CRLF added above.
    if b"\r\n." in buf:
        buf = bytearray(buf.replace(b"\r\n.", b"\r\n"))
    del buf[:2]
    if len(buf) > limits.max_message_bytes:
        return replies.MESSAGE_TOO_BIG
    return buf

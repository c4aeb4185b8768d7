"""Case C2 of docs/testing.md: a message over the size limit is refused after its end without being buffered (the
reader keeps the limit and the bytes that could begin the terminator, never the rest), measured with tracemalloc."""

from __future__ import annotations

import asyncio
import dataclasses
import tracemalloc

from taifa_relay.domain import replies
from taifa_relay.entrypoints.message_reader import READ_CHUNK, read_message

from tests.unit.relay.relay_fakes import protocol_limits

LIMIT = 50_000
STREAMED = 4_000_000  # eighty times the limit


class Stream:
    """A client sending STREAMED bytes of message lines, then the end of data: each chunk is made when read."""

    def __init__(self) -> None:
        self.sent = 0
        self.ended = False

    async def read(self, size: int) -> bytes:
        if self.sent >= STREAMED:
            if self.ended:
                return b""
            self.ended = True
            return b"\r\n.\r\nQUIT\r\n"
        self.sent += size
        return (b"x" * 998 + b"\r\n") * (size // 1000)


def test_c2_a_message_over_the_limit_is_refused_without_being_buffered() -> None:
    limits = dataclasses.replace(protocol_limits(), max_message_bytes=LIMIT, min_data_rate=0)

    async def main() -> tuple[object, bytes]:
        outcome, leftover = await read_message(Stream(), limits, asyncio.get_running_loop(), on_data=lambda: None)  # type: ignore[arg-type]
        return outcome, leftover

    tracemalloc.start()
    try:
        outcome, leftover = asyncio.run(main())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome == replies.MESSAGE_TOO_BIG and leftover == b"QUIT\r\n"
    # The limit, a few chunks in flight and the event loop's own: far below what was streamed.
    assert peak < LIMIT + 8 * READ_CHUNK, peak

"""The reply reader of the relay's pipelined upstream connections: every reply kept, in order, however the bytes
arrive (several replies in one segment, one reply over several, multi-line replies)."""

from __future__ import annotations

import asyncio

import pytest
from aiosmtplib import SMTPServerDisconnected, SMTPTimeoutError
from taifa_relay.adapters.upstream_pipelining import ReplyReader


def test_replies_split_and_joined_arbitrarily_come_out_in_order() -> None:
    async def main() -> list[tuple[int, str]]:
        reader = ReplyReader(asyncio.get_running_loop())
        wire = b"250 2.1.0 Ok\r\n250-first\r\n250 second\r\n354 End data\r\n250 2.0.0 queued as X\r\n"
        for start in range(0, len(wire), 7):  # 7-byte pieces: replies cut anywhere
            reader.data_received(wire[start : start + 7])
        return [tuple(await reader.read(1)) for _ in range(4)]  # type: ignore[misc]

    assert asyncio.run(main()) == [
        (250, "2.1.0 Ok"),
        (250, "first\nsecond"),
        (354, "End data"),
        (250, "2.0.0 queued as X"),
    ]


def test_a_closed_connection_or_silence_raises_instead_of_waiting_forever() -> None:
    async def main() -> None:
        reader = ReplyReader(asyncio.get_running_loop())
        with pytest.raises(SMTPTimeoutError):
            await reader.read(0.01)
        reader.data_received(b"250 ok\r\n")
        reader.eof_received()
        assert (await reader.read(1)).code == 250  # what arrived before the end is still read
        with pytest.raises(SMTPServerDisconnected):
            await reader.read(1)

    asyncio.run(main())


def test_a_waiting_read_wakes_on_its_reply_and_a_cancelled_one_loses_nothing() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        reader = ReplyReader(loop)
        loop.call_later(0.01, reader.data_received, b"250 later\r\n")
        started = loop.time()
        assert (await reader.read(5)).message == "later"
        assert loop.time() - started < 1  # woken by the reply, not by the timeout
        waiting = asyncio.ensure_future(reader.read(5))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        reader.data_received(b"354 go on\r\n")
        assert (await reader.read(0.01)).code == 354

    asyncio.run(main())


def test_a_reply_dripped_byte_by_byte_still_times_out_at_the_bound() -> None:
    # The bound is one deadline for the whole reply: each segment that arrived used to start it again, so an
    # upstream sending a byte at a time was never timed out.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        reader = ReplyReader(loop)
        for step in range(1, 40):
            loop.call_later(0.02 * step, reader.data_received, b"2")
        started = loop.time()
        with pytest.raises(SMTPTimeoutError):
            await reader.read(0.2)
        assert loop.time() - started < 0.5

    asyncio.run(main())

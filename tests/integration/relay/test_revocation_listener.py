"""The relay's revocation listener on a real Redis, through a TCP proxy that can go silent without closing (a
half-open connection: a Redis failed over, a NAT that forgot the flow). A silent channel is found by its unanswered
PING and counted as lost at once (every session marked for a re-read), then subscribed again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis
from taifa_events.auth_cache import EPOCH_KEY, REVOCATIONS_CHANNEL, WATERMARK_KEY
from taifa_relay.adapters.auth_cache import RedisAuthCacheReader
from taifa_relay.adapters.revocation_listener import RevocationListener

from tests.integration.relay.support import until

PING_SECONDS = 0.3
DEADLINE = 10.0


class SilentableProxy:
    """Forwards TCP to `target`; `silence()` stops forwarding on every open connection without closing it."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.silent = False
        self.client_bytes = b""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        silent_here = self.silent  # a connection opened while silent forwards (the new, healthy path)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, from_client: bool) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await source.read(65536):
                    if from_client:
                        self.client_bytes += data
                    if self.silent and not silent_here:
                        continue  # swallowed: the peer hears nothing, and nothing is closed
                    sink.write(data)
                    await sink.drain()

        for task in (pump(reader, up_writer, True), pump(up_reader, writer, False)):
            running = asyncio.create_task(task)
            self._tasks.add(running)
            running.add_done_callback(self._tasks.discard)

    def silence(self) -> None:
        self.silent = True

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def proxied(relay_redis_url: str) -> AsyncIterator[tuple[SilentableProxy, str]]:
    parts = urlsplit(relay_redis_url)
    proxy = SilentableProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    port = await proxy.start()
    try:
        yield proxy, urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))
    finally:
        await proxy.close()


async def test_a_silent_revocation_channel_is_dropped_marks_every_session_and_resubscribes(
    proxied: tuple[SilentableProxy, str], relay_redis_url: str
) -> None:
    proxy, url = proxied
    listener = RevocationListener(url)
    messages: list[str] = []
    marks: list[str] = []
    stop = asyncio.Event()
    listening = asyncio.create_task(
        listener.listen(messages.append, stop, lambda: marks.append("mark"), ping_seconds=PING_SECONDS)
    )
    publisher: Any = aioredis.Redis.from_url(relay_redis_url)
    try:
        await until(lambda: len(marks) == 1, DEADLINE, "the first subscription is confirmed")
        await publisher.publish(REVOCATIONS_CHANNEL, "one")
        await until(lambda: messages == ["one"], DEADLINE, "a revocation arrives")
        # A quiet but healthy channel: PINGed and answered, never dropped.
        await until(lambda: proxy.client_bytes.count(b"PING") >= 3, DEADLINE, "three PINGs on the quiet channel")
        assert len(marks) == 1

        proxy.silence()  # the connection stays open and says nothing more
        await until(lambda: len(marks) >= 2, DEADLINE, "the silent channel is counted as lost (sessions marked)")
        await until(lambda: len(marks) >= 3, DEADLINE, "a new subscription is confirmed")
        await publisher.publish(REVOCATIONS_CHANNEL, "two")
        await until(lambda: messages == ["one", "two"], DEADLINE, "revocations arrive again on the new connection")
    finally:
        stop.set()
        await asyncio.wait_for(listening, DEADLINE)
        await publisher.aclose()


async def test_a_new_cache_epoch_marks_every_session_for_a_re_read(relay_redis_url: str) -> None:
    """A rebuilt cache (after a flush, a restore or a crash between the projector's two commits) publishes no
    revocation: the first read that finds a new epoch marks every logged-in session instead."""
    client: Any = aioredis.Redis.from_url(relay_redis_url)
    reader = RedisAuthCacheReader(relay_redis_url, failure_window_seconds=60)
    marks: list[str] = []
    reader.on_epoch_change = lambda: marks.append("mark")
    saved = {key: await client.get(key) for key in (EPOCH_KEY, WATERMARK_KEY)}  # other tests' cache, put back
    try:
        await client.set(EPOCH_KEY, "epoch-one")
        await client.set(WATERMARK_KEY, "5")
        await reader.reread("nobody@epoch.example")
        await reader.reread("nobody@epoch.example")
        assert marks == []  # the first epoch seen, then the same one
        await client.set(EPOCH_KEY, "epoch-two")
        await reader.reread("nobody@epoch.example")
        assert marks == ["mark"]
    finally:
        for key, value in saved.items():
            await (client.delete(key) if value is None else client.set(key, value))
        await reader.close()
        await client.aclose()

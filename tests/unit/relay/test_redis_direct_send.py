"""The relay's Redis connections (adapters.redis_connection): a command goes straight to the transport only when its
write buffer is empty and nothing else is due; otherwise redis-py's own send (its task and write timeout) runs. A
Redis that accepts and never answers still fails a read after the client's timeout."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio.connection import Connection
from taifa_localstack.process import free_port
from taifa_relay.adapters.auth_cache import RedisAuthCacheReader
from taifa_relay.adapters.redis_connection import DirectSendConnection, DirectSendSSLConnection, relay_redis
from taifa_relay.application.ports import CacheUnavailable


class _Transport:
    def __init__(self, backlog: int = 0, closing: bool = False) -> None:
        self.backlog = backlog
        self.closing = closing

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def is_closing(self) -> bool:
        return self.closing


class _Writer:
    def __init__(self, transport: _Transport) -> None:
        self.transport = transport
        self.written: list[bytes] = []

    def writelines(self, data: list[bytes]) -> None:
        self.written.extend(data)


_MADE: list[Any] = []


@pytest.fixture(autouse=True)
def _forget_fake_writers() -> Iterator[None]:
    """The fake connections look connected (a writer): unset it, so that none warns of an unclosed connection."""
    yield
    for connection in _MADE:
        connection._writer = None
    _MADE.clear()


def _connection(writer: _Writer | None, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[Any]]:
    through_redis_py: list[Any] = []

    async def redis_py_send(self: Any, command: Any, check_health: bool = True) -> None:
        through_redis_py.append(command)

    monkeypatch.setattr(Connection, "send_packed_command", redis_py_send)
    connection = DirectSendConnection(host="127.0.0.1", port=1)
    connection._writer = writer  # type: ignore[assignment]
    _MADE.append(connection)
    return connection, through_redis_py


async def test_an_empty_write_buffer_takes_the_command_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    writer = _Writer(_Transport())
    connection, through_redis_py = _connection(writer, monkeypatch)
    await connection.send_packed_command([b"*1\r\n", b"$4\r\nPING\r\n"])
    assert writer.written == [b"*1\r\n", b"$4\r\nPING\r\n"] and through_redis_py == []


@pytest.mark.parametrize("transport", [_Transport(backlog=10), _Transport(closing=True)])
async def test_a_backlog_or_a_closing_transport_goes_through_redis_py(
    monkeypatch: pytest.MonkeyPatch, transport: _Transport
) -> None:
    writer = _Writer(transport)
    connection, through_redis_py = _connection(writer, monkeypatch)
    await connection.send_packed_command([b"PING"])
    assert writer.written == [] and through_redis_py == [[b"PING"]]


async def test_not_connected_or_a_health_check_due_goes_through_redis_py(monkeypatch: pytest.MonkeyPatch) -> None:
    connection, through_redis_py = _connection(None, monkeypatch)
    await connection.send_packed_command([b"PING"])
    writer = _Writer(_Transport())
    checked, through_checked = _connection(writer, monkeypatch)
    checked.health_check_interval = 30
    await checked.send_packed_command([b"PING"])
    assert through_redis_py == [[b"PING"]] and through_checked == [[b"PING"]] and writer.written == []


def test_redis_and_rediss_urls_get_the_direct_send_connections() -> None:
    assert relay_redis("redis://127.0.0.1:1/0", timeout=1).connection_pool.connection_class is DirectSendConnection
    secure = relay_redis("rediss://127.0.0.1:1/0", timeout=1).connection_pool.connection_class
    assert secure is DirectSendSSLConnection


async def test_a_redis_that_never_answers_fails_the_read_after_the_timeout() -> None:
    listener = socket.create_server(("127.0.0.1", free_port()))
    accepted: list[socket.socket] = []
    loop = asyncio.get_running_loop()
    port = listener.getsockname()[1]
    reader = RedisAuthCacheReader(f"redis://127.0.0.1:{port}/0", failure_window_seconds=60, timeout=0.3)
    try:
        loop.add_reader(listener.fileno(), lambda: accepted.append(listener.accept()[0]))
        started = time.monotonic()
        with pytest.raises(CacheUnavailable):
            await reader.reread("someone@example.test")
        assert time.monotonic() - started < 3
    finally:
        loop.remove_reader(listener.fileno())
        await reader.close()
        for connection in accepted:
            connection.close()
        listener.close()

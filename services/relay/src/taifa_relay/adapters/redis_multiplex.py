"""One Redis connection shared by the relay's per-message scripts of every session, with automatic pipelining.

A message costs four Redis round trips (AUTH's read, MAIL's script, RCPT's count, the read at the end of DATA). Sent
through redis-py's pool, each is a connection of its own, one write and one read: a loopback write with its wake-up of
Redis was about a tenth of the relay's CPU in load (a) of bench/relay. Here the commands that sessions issue in one
pass of the event loop are written together when the pass ends (`loop.call_soon`: no command waits for another one
or for more input), and Redis answers them in order on the one connection. Each command is still on its own:
pipelining is not a transaction, and a command's reply is exactly what it would have been alone.

redis-py opens the connection (TLS, AUTH, SELECT, its handshake, with the client's connect timeout), then the
transport's protocol becomes `_Replies`, which parses with hiredis and resolves the waiting commands in order. A
command whose reply does not come within `timeout` fails with redis-py's TimeoutError, and so does every command
then waiting on the connection, which is closed (as redis-py drops a connection after a read timeout); a lost
connection fails what was waiting with ConnectionError. The next command opens a new connection.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _Replies(asyncio.Protocol):
    """The connection's protocol once redis-py has opened it: replies to the waiting commands, in order."""

    def __init__(self, owner: MultiplexedRedis) -> None:
        self._owner = owner
        self._parser = hiredis.Reader(protocolError=InvalidResponse, replyError=BaseParser.parse_error)

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        waiting = self._owner._waiting
        while True:
            try:
                reply = self._parser.gets()
            except InvalidResponse as exc:
                self._owner._fail(self, RedisConnectionError(f"invalid reply from Redis: {exc}"))
                return
            if reply is False:
                return
            if not waiting:
                self._owner._fail(self, RedisConnectionError("reply from Redis without a command"))
                return
            future, _ = waiting.popleft()
            if future.done():  # its caller was cancelled (the client went away): the reply is dropped
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def eof_received(self) -> bool:
        self._owner._fail(self, RedisConnectionError("Redis closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._fail(self, RedisConnectionError("connection to Redis lost"))


class MultiplexedRedis:
    """`execute(*args)`: one Redis command on the shared connection; its reply (errors raised as redis-py's)."""

    def __init__(self, client: Redis, *, timeout: float) -> None:
        self._client = client
        self._timeout = timeout
        self._transport: asyncio.Transport | None = None
        self._protocol: _Replies | None = None
        self._connection: Any = None
        self._connecting: asyncio.Future[None] | None = None
        self._waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self._out: list[bytes] = []
        self._flush_due = False
        self._timer: asyncio.TimerHandle | None = None

    async def execute(self, *args: Any) -> Any:
        if self._transport is None or self._transport.is_closing():
            await self._connect()
        connection, transport = self._connection, self._transport
        if connection is None or transport is None:
            raise RedisConnectionError("connection to Redis lost")  # lost again before this command's turn
        loop = asyncio.get_running_loop()
        self._out += connection.pack_command(*args)
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((future, loop.time() + self._timeout))
        if not self._flush_due:
            self._flush_due = True
            loop.call_soon(self._flush)
        if self._timer is None:
            self._timer = loop.call_later(self._timeout, self._check_timeout)
        return await future

    async def _connect(self) -> None:
        """One connection attempt shared by every command that finds no connection: they all wait for it and all
        get its error (a Redis that does not answer costs each of them one connect timeout, not one per command
        before it); a cancelled command leaves the attempt to the others."""
        connecting = self._connecting
        if connecting is None:
            connecting = self._connecting = asyncio.ensure_future(self._open())
            connecting.add_done_callback(self._connected)
        await asyncio.shield(connecting)

    def _connected(self, attempt: asyncio.Future[None]) -> None:
        if self._connecting is attempt:
            self._connecting = None
        if not attempt.cancelled():
            attempt.exception()  # retrieved here too: every waiter may have been cancelled

    async def _open(self) -> None:
        connection = self._client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        await connection.connect()  # redis-py's TLS, AUTH, SELECT and handshake, within its connect timeout
        transport = connection._writer.transport
        self._protocol = _Replies(self)
        transport.set_protocol(self._protocol)
        self._connection, self._transport = connection, transport

    def _flush(self) -> None:
        self._flush_due = False
        out, self._out = self._out, []
        if out and self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(out))

    def _check_timeout(self) -> None:
        self._timer = None
        if not self._waiting:
            return
        loop = asyncio.get_running_loop()
        deadline = self._waiting[0][1]
        if deadline <= loop.time():
            self._fail(self._protocol, RedisTimeoutError("Timeout reading from Redis"))
        else:
            self._timer = loop.call_at(deadline, self._check_timeout)

    def _fail(self, protocol: _Replies | None, error: Exception) -> None:
        """Every waiting command fails with `error` and the connection is closed (if `protocol` is still its)."""
        if protocol is not self._protocol:
            return
        transport = self._transport
        self._transport = self._protocol = self._connection = None
        self._out = []
        waiting, self._waiting = self._waiting, collections.deque()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(error)
        if transport is not None:
            transport.close()

    async def aclose(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        self._fail(self._protocol, RedisConnectionError("closed"))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def evalsha(self, sha: str, script: str, keys: list[str], args: list[Any], *, read_only: bool = False) -> Any:
        """EVALSHA (EVALSHA_RO) of `script` by its SHA-1; after a NOSCRIPT (a restarted or flushed Redis) the script
        is loaded and run once more, as redis-py's Script does."""
        command = "EVALSHA_RO" if read_only else "EVALSHA"
        try:
            return await self.execute(command, sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.execute("SCRIPT", "LOAD", script)
            return await self.execute(command, sha, len(keys), *keys, *args)

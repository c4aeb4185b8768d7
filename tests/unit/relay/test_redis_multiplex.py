"""The shared script connection (adapters.redis_multiplex) against a scripted RESP server: the commands of one pass of
the event loop go out in one write and each caller gets its own reply, in order; error replies raise redis-py's
exceptions (a NOSCRIPT loads the script and runs it again); a Redis that stops answering fails every waiting command
after the timeout, a lost connection fails them at once, and the next command opens a new connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import hiredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from taifa_relay.adapters.redis_connection import relay_redis
from taifa_relay.adapters.redis_multiplex import MultiplexedRedis

Reply = Callable[[list[bytes], int], bytes | None]  # (command, its number on this server) -> RESP reply, or silence


class _Server:
    """A RESP server: answers redis-py's handshake with +OK, every other command with `reply`; records each read."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.reads: list[bytes] = []
        self.commands: list[list[bytes]] = []
        self.connections = 0
        self.silent = False  # once a reply is withheld, this server answers nothing more (Redis answers in order)
        self.writers: list[asyncio.StreamWriter] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.silent = False
        self.writers.append(writer)
        parser = hiredis.Reader()
        while data := await reader.read(65536):
            self.reads.append(data)
            parser.feed(data)
            out = []
            while (command := parser.gets()) is not False:
                if command[0].upper() in (b"CLIENT", b"HELLO", b"SELECT", b"AUTH"):
                    out.append(b"+OK\r\n")
                    continue
                self.commands.append(command)
                answer = None if self.silent else self.reply(command, len(self.commands))
                if answer is None:
                    self.silent = True
                else:
                    out.append(answer)
            writer.write(b"".join(out))


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Reply], Any]]:
    servers: list[asyncio.Server] = []

    async def start(reply: Reply) -> tuple[_Server, MultiplexedRedis]:
        fake = _Server(reply)
        server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return fake, MultiplexedRedis(relay_redis(f"redis://127.0.0.1:{port}/0", timeout=0.3), timeout=0.3)

    yield start
    for server in servers:
        server.close()


def _number(command: list[bytes], n: int) -> bytes:
    return b":%d\r\n" % n


async def test_commands_of_one_pass_go_out_in_one_write_and_each_caller_gets_its_reply(serve: Any) -> None:
    fake, redis = await serve(_number)
    await redis.execute("GET", "warm-up")  # connects
    fake.reads.clear()
    replies = await asyncio.gather(*(redis.execute("GET", f"key{n}") for n in range(5)))
    assert replies == [2, 3, 4, 5, 6]
    assert [command[1] for command in fake.commands[1:]] == [f"key{n}".encode() for n in range(5)]
    assert len(fake.reads) == 1, "one write for the five commands"
    assert fake.connections == 1
    await redis.aclose()


async def test_an_error_reply_raises_and_noscript_loads_the_script_and_runs_it_again(serve: Any) -> None:
    loaded: list[bytes] = []

    def reply(command: list[bytes], n: int) -> bytes:
        name = command[0].upper()
        if name == b"SCRIPT":
            loaded.append(command[2])
            return b"$3\r\nsha\r\n"
        if name == b"EVALSHA_RO" and not loaded:
            return b"-NOSCRIPT No matching script. Please use EVAL.\r\n"
        if name == b"EVALSHA_RO":
            return b"*2\r\n:1\r\n$1\r\nx\r\n"
        return b"-ERR unknown command\r\n"

    _, redis = await serve(reply)
    assert await redis.evalsha("sha", "return 1", ["k"], ["a"], read_only=True) == [1, b"x"]
    assert loaded == [b"return 1"]
    with pytest.raises(ResponseError, match="unknown command"):
        await redis.execute("NOPE")
    assert await redis.evalsha("sha", "return 1", ["k"], [], read_only=True) == [1, b"x"]  # the connection goes on
    await redis.aclose()


async def test_a_redis_that_stops_answering_fails_every_waiting_command_then_a_new_connection_serves(
    serve: Any,
) -> None:
    fake, redis = await serve(lambda command, n: None if command[1] == b"silent" else _number(command, n))
    started = asyncio.get_running_loop().time()
    results = await asyncio.gather(
        redis.execute("GET", "silent"), redis.execute("GET", "answered-behind-it"), return_exceptions=True
    )
    assert all(isinstance(result, RedisTimeoutError) for result in results)
    assert 0.25 < asyncio.get_running_loop().time() - started < 2
    assert await redis.execute("GET", "next") == 3
    assert fake.connections == 2
    await redis.aclose()


async def test_a_lost_connection_fails_the_waiting_commands_at_once(serve: Any) -> None:
    fake, redis = await serve(lambda command, n: None)
    waiting = asyncio.ensure_future(redis.execute("GET", "k"))
    while not fake.commands:
        await asyncio.sleep(0.01)
    fake.writers[0].close()
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(waiting, 0.2)  # well before the 0.3 s timeout
    await redis.aclose()


async def test_a_cancelled_caller_leaves_the_next_reply_to_the_next_caller(serve: Any) -> None:
    _, redis = await serve(_number)
    await redis.execute("GET", "warm-up")
    first = asyncio.ensure_future(redis.execute("GET", "first"))
    second = asyncio.ensure_future(redis.execute("GET", "second"))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == 3
    assert first.cancelled()
    await redis.aclose()


async def test_commands_that_find_no_connection_share_one_attempt_and_its_failure() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # redis-py's handshake gets no reply: the connect times out

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redis = MultiplexedRedis(relay_redis(f"redis://127.0.0.1:{port}/0", timeout=0.3), timeout=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(*(redis.execute("GET", f"k{n}") for n in range(4)), return_exceptions=True)
    assert all(isinstance(result, RedisTimeoutError) for result in results), results
    assert loop.time() - started < 0.9, "one connect timeout for all four, not one each"
    assert len(accepted) == 1
    await redis.aclose()
    server.close()

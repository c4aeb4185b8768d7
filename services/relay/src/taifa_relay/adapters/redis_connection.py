"""The relay's Redis clients: `taifa_runtime.redis.redis_client` with connections that send a command without a task of
its own when nothing waits to be written.

redis-py sends every command as `asyncio.wait_for(writelines + drain, socket_timeout)`, which creates and schedules
a task per command (about 10-20 us of the relay's CPU per round trip, and the relay makes three or four per message).
When the transport's write buffer is empty the write cannot block: `drain()` would return at once and the timeout
could never fire, so the bytes are handed to the transport directly. Otherwise (a backlog, a closing transport, a
health check due) redis-py's own path runs, with its timeout. Reads keep redis-py's read timeout either way, so a
Redis that stops answering still fails the command after `timeout` (the application answers 451/454)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection
from taifa_runtime.redis import redis_client

# The read timeout of every Redis client of the relay (the auth cache, the per-message scripts' shared connection,
# the sending limits, the usage buffer, the domain owners): a Redis that stops answering fails the command then.
REDIS_TIMEOUT_SECONDS: Final = 2.0


class _DirectSend:
    """Mixed into redis-py's connection classes (before them): `send_packed_command` without a task when it cannot
    block, and a cheaper `pack_command`."""

    async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
        writer: Any = getattr(self, "_writer", None)
        if (
            type(command) is list
            and writer is not None
            and not getattr(self, "health_check_interval", 0)
            and not writer.transport.is_closing()
            and writer.transport.get_write_buffer_size() == 0
        ):
            writer.writelines(command)
            return
        await super().send_packed_command(command, check_health)  # type: ignore[misc]

    def pack_command(self, *args: Any) -> list[bytes]:
        """redis-py's `pack_command` in one join, for the arguments the relay sends (str, bytes, int, each below
        redis-py's chunking cutoff, a one-word command name): the same bytes on the wire (tests/unit/relay/
        test_redis_pack_differential.py), ~3 us instead of ~7.5 us for AUTH's read. Anything else goes to redis-py's
        own."""
        encoder: Any = getattr(self, "encoder", None)
        cutoff: int = getattr(self, "_buffer_cutoff", 0)
        name = args[0] if args else None
        if encoder is None or (type(name) is not str and type(name) is not bytes) or len(name.split()) != 1:
            # No name, or "SCRIPT LOAD" and the like: redis-py splits the name into words.
            return super().pack_command(*args)  # type: ignore[misc, no-any-return]
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            kind = type(arg)
            if kind is str:
                arg = arg.encode(encoder.encoding, encoder.encoding_errors)
            elif kind is int:
                arg = b"%d" % arg
            elif kind is not bytes:
                return super().pack_command(*args)  # type: ignore[misc, no-any-return]
            if len(arg) > cutoff:
                return super().pack_command(*args)  # type: ignore[misc, no-any-return]
            parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
        return [b"".join(parts)]


class DirectSendConnection(_DirectSend, Connection):
    """redis:// connections."""


class DirectSendSSLConnection(_DirectSend, SSLConnection):
    """rediss:// connections."""


def relay_redis(url: str, *, timeout: float | None, **options: Any) -> Redis:
    """`redis_client(url, timeout=..., **options)` whose connections send directly when they can (unix:// keeps
    redis-py's own)."""
    client = redis_client(url, timeout=timeout, **options)
    pool = client.connection_pool
    if pool.connection_class is Connection:
        pool.connection_class = DirectSendConnection
    elif pool.connection_class is SSLConnection:
        pool.connection_class = DirectSendSSLConnection
    return client

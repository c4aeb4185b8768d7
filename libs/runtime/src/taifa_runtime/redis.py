"""The one way the services build Redis clients, so every client states its timeouts where it is made.

redis-py's own default is no socket timeout at all: a Redis that stops answering (a network partition, a
paused primary) would hang a caller forever. `timeout` is therefore required; `None` must be written out by
the one kind of caller that blocks on purpose (a pub/sub listener, which bounds its own waits).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis


def redis_client(url: str, *, timeout: float | None, connect_timeout: float | None = None, **options: Any) -> Redis:
    """An asyncio client (with its own connection pool) for `url` (`redis://` or `rediss://`, credentials in it).

    `timeout` bounds every command's socket reads and writes; `connect_timeout` bounds connecting (the same as
    `timeout` unless given). Other keyword arguments go to redis-py unchanged (`retry_on_timeout`,
    `decode_responses`, `max_connections`...).
    """
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout if connect_timeout is None else connect_timeout,
        **options,
    )

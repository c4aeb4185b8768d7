"""Redis clients are built with the timeouts their call site states (redis-py's default is to wait forever)."""

from __future__ import annotations

import pytest
from taifa_runtime.redis import redis_client


async def test_timeout_bounds_commands_and_connecting_unless_connecting_has_its_own() -> None:
    client = redis_client("redis://127.0.0.1:6399/0", timeout=2.0, retry_on_timeout=False)
    options = client.connection_pool.connection_kwargs
    assert options["socket_timeout"] == 2.0 and options["socket_connect_timeout"] == 2.0
    assert options["retry_on_timeout"] is False
    await client.aclose()

    client = redis_client("redis://127.0.0.1:6399/0", timeout=10, connect_timeout=5)
    options = client.connection_pool.connection_kwargs
    assert options["socket_timeout"] == 10 and options["socket_connect_timeout"] == 5
    await client.aclose()


async def test_url_credentials_and_database_are_kept() -> None:
    client = redis_client("redis://relay:s3cret@cache.internal:6380/3", timeout=1)
    options = client.connection_pool.connection_kwargs
    assert (options["host"], options["port"], options["db"]) == ("cache.internal", 6380, 3)
    assert (options["username"], options["password"]) == ("relay", "s3cret")
    await client.aclose()


def test_a_timeout_must_be_stated() -> None:
    with pytest.raises(TypeError):
        redis_client("redis://127.0.0.1:6399/0")  # type: ignore[call-arg]

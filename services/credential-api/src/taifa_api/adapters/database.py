"""The asyncpg pool of the API (jsonb as Python objects, UUIDs native)."""

from __future__ import annotations

import json

import asyncpg


async def _init_connection(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(database_url: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        database_url, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=30
    )
    assert pool is not None
    return pool


async def connect(database_url: str) -> asyncpg.Connection:
    """One dedicated connection (the publisher's), with the same codecs as the pool."""
    connection = await asyncpg.connect(database_url, timeout=10)
    await _init_connection(connection)
    return connection

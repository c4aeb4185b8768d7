"""Projector migration 0008 (usage windows by generation) on real PostgreSQL: the rows of a database at 0007 are
kept as generation "", the key becomes (credential, hour, generation) through an index built CONCURRENTLY (outside
the migration's transaction), and a downgrade keeps one row per hour again."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
from alembic import command
from taifa_projector.adapters import migrate
from taifa_runtime.migrations import alembic_config

from tests.integration.projector.conftest import new_database

HOUR = datetime(2026, 11, 28, 6, tzinfo=UTC)
INSERT = (
    "INSERT INTO rm_usage_windows (credential_id, account_id, window_start, messages, reported_at{extra}) "
    "VALUES ($1, $2, $3, $4, now(){values})"
)


def _upgrade(url: str, revision: str) -> None:
    command.upgrade(alembic_config(url, migrate.SCRIPT_LOCATION, migrate.VERSION_TABLE), revision)


def _downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url, migrate.SCRIPT_LOCATION, migrate.VERSION_TABLE), revision)


async def _key(conn: asyncpg.Connection) -> list[str]:
    return list(
        await conn.fetchval(
            "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_constraint c "
            "CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
            "WHERE c.conname = 'rm_usage_windows_pkey'"
        )
    )


async def test_0008_keeps_the_windows_changes_the_key_and_downgrades(postgres_server) -> None:
    url = await new_database(postgres_server.url)
    credential, account = uuid.uuid4(), uuid.uuid4()
    await asyncio.to_thread(_upgrade, url, "0007")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(INSERT.format(extra="", values=""), credential, account, HOUR, 3)
    finally:
        await conn.close()

    await asyncio.to_thread(_upgrade, url, "0008")
    conn = await asyncpg.connect(url)
    try:
        assert await _key(conn) == ["credential_id", "window_start", "generation"]
        assert await conn.fetchval("SELECT generation FROM rm_usage_windows") == ""
        await conn.execute(INSERT.format(extra=", generation", values=", $5"), credential, account, HOUR, 2, "g.1")
        assert await conn.fetchval("SELECT sum(messages) FROM rm_usage_windows") == 5
        assert not await conn.fetchval("SELECT count(*) FROM pg_index WHERE NOT indisvalid")
    finally:
        await conn.close()

    await asyncio.to_thread(_downgrade, url, "0007")
    conn = await asyncpg.connect(url)
    try:
        assert await _key(conn) == ["credential_id", "window_start"]
        assert await conn.fetchval("SELECT messages FROM rm_usage_windows") == 3  # the larger row of the hour
    finally:
        await conn.close()

"""API migration 0007 (domains.verification_method) on real PostgreSQL: the domains verified before it get the
method of their latest DomainVerified event, so an operator's verification without DNS is left out of the re-check
from the upgrade on; pending domains and unknown methods stay NULL (read as dns); the downgrade drops the column."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import asyncpg
from alembic import command
from api_support import create_database
from taifa_api.adapters import migrate
from taifa_runtime.migrations import alembic_config

NOW = datetime(2026, 11, 29, 6, tzinfo=UTC)


def _migrate(url: str, revision: str, *, down: bool = False) -> None:
    config = alembic_config(url, migrate.SCRIPT_LOCATION, migrate.VERSION_TABLE)
    (command.downgrade if down else command.upgrade)(config, revision)


async def _domain(conn: asyncpg.Connection, status: str, methods: list[str | None]) -> uuid.UUID:
    domain_id, account_id = uuid.uuid4(), uuid.uuid4()
    await conn.execute(
        "INSERT INTO accounts (account_id, name, plan, created_at) VALUES ($1, 'a', 'free', $2)", account_id, NOW
    )
    await conn.execute(
        "INSERT INTO domains (domain_id, account_id, name, status, verification_name, verification_value, "
        "created_at, verified_at) VALUES ($1, $2, $3, $4, '_taifa.x', 'v', $5, $5)",
        domain_id,
        account_id,
        f"d{domain_id.hex[:8]}.example",
        status,
        NOW,
    )
    position = await conn.fetchval("SELECT coalesce(max(position), 0) FROM event_store")
    for version, method in enumerate(methods, start=1):
        data = {"domain_id": str(domain_id), "account_id": str(account_id), "name": "x", "verified_at": "t"}
        if method is not None:
            data["method"] = method
        await conn.execute(
            "INSERT INTO event_store (position, event_id, event_type, schema_version, stream_id, stream_version, "
            "topic, partition_key, occurred_at, correlation_id, data) "
            "VALUES ($1, $2, 'DomainVerified', 1, $3, $4, 't', 'k', $5, 'c', $6::jsonb)",
            position + version,
            uuid.uuid4(),
            domain_id,
            version,
            NOW,
            json.dumps(data),
        )
    return domain_id


async def test_0007_fills_the_method_of_verified_domains_from_their_latest_event(postgres_server) -> None:
    url = await asyncio.to_thread(create_database, postgres_server.url)
    await asyncio.to_thread(_migrate, url, "0006")
    conn = await asyncpg.connect(url)
    try:
        forced = await _domain(conn, "verified", ["dns", "operator"])  # verified again by an operator last
        by_dns = await _domain(conn, "verified", ["operator", "dns"])
        unknown = await _domain(conn, "verified", [None])  # an event from before `method`
        pending = await _domain(conn, "pending", ["operator"])
    finally:
        await conn.close()
    await asyncio.to_thread(_migrate, url, "0007")
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT domain_id, verification_method FROM domains")
        methods = {row["domain_id"]: row["verification_method"] for row in rows}
        assert methods == {forced: "operator", by_dns: "dns", unknown: None, pending: None}
    finally:
        await conn.close()
    await asyncio.to_thread(_migrate, url, "0006", down=True)
    conn = await asyncpg.connect(url)
    try:
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'domains' "
            "AND column_name = 'verification_method'"
        )
        assert columns == []
    finally:
        await conn.close()

# ruff: noqa: S608 - SQL is built only from constant column lists; values are always bind parameters.
"""SQL of the owner's side of webhooks: `webhook_endpoints` (written in the command's transaction) and the reads
behind `GET /v1/webhooks...` (endpoints, and the deliveries with their attempts that the dispatcher recorded).

Secret ciphertexts are written here and never read back by these functions: no query a route runs selects them.
Every read filters on the caller's account, so another account's endpoint is as absent as a random id.
"""

from __future__ import annotations

from typing import Any, Final
from uuid import UUID

import asyncpg

from taifa_api.adapters.webhook_secrets import WebhookSecretBox
from taifa_api.domain.paging import Position
from taifa_api.domain.webhooks import WebhookEndpoint

_COLUMNS: Final = (
    "id, account_id, url, events, status, created_at, previous_secret_expires_at, disabled_at, disabled_reason"
)
_DELIVERY_COLUMNS: Final = (
    "id, message_id, event_id, event_type, payload, status, attempts, next_attempt_at, created_at, last_attempt_at"
)
ATTEMPTS_SHOWN: Final = 10  # newest attempts listed per delivery


def _endpoint(row: asyncpg.Record) -> WebhookEndpoint:
    return WebhookEndpoint(
        webhook_id=row["id"],
        account_id=row["account_id"],
        url=row["url"],
        events=tuple(row["events"]),
        status=row["status"],
        created_at=row["created_at"],
        previous_secret_expires_at=row["previous_secret_expires_at"],
        disabled_at=row["disabled_at"],
        disabled_reason=row["disabled_reason"],
    )


class PostgresWebhooks:
    """The unit of work's WebhookRepository, on its connection and transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def count(self, account_id: UUID) -> int:
        return int(
            await self._conn.fetchval("SELECT count(*) FROM webhook_endpoints WHERE account_id = $1", account_id)
        )

    async def add(self, endpoint: WebhookEndpoint, secret_ciphertext: bytes) -> None:
        await self._conn.execute(
            "INSERT INTO webhook_endpoints (id, account_id, url, events, status, secret_ciphertext, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            endpoint.webhook_id,
            endpoint.account_id,
            endpoint.url,
            list(endpoint.events),
            endpoint.status,
            secret_ciphertext,
            endpoint.created_at,
        )

    async def lock(self, webhook_id: UUID, account_id: UUID | None) -> WebhookEndpoint | None:
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND ($2::uuid IS NULL OR account_id = $2) "
            "FOR UPDATE",
            webhook_id,
            account_id,
        )
        return _endpoint(row) if row is not None else None

    async def rotate_secret(self, endpoint: WebhookEndpoint, secret_ciphertext: bytes) -> None:
        await self._conn.execute(
            "UPDATE webhook_endpoints SET previous_secret_ciphertext = secret_ciphertext, secret_ciphertext = $2, "
            "previous_secret_expires_at = $3 WHERE id = $1",
            endpoint.webhook_id,
            secret_ciphertext,
            endpoint.previous_secret_expires_at,
        )

    async def save_status(self, endpoint: WebhookEndpoint) -> None:
        await self._conn.execute(
            "UPDATE webhook_endpoints SET status = $2, disabled_at = $3, disabled_reason = $4 WHERE id = $1",
            endpoint.webhook_id,
            endpoint.status,
            endpoint.disabled_at,
            endpoint.disabled_reason,
        )

    async def delete(self, webhook_id: UUID) -> None:
        await self._conn.execute("DELETE FROM webhook_endpoints WHERE id = $1", webhook_id)


# --- reads of the owner's routes (on the pool) ------------------------------------------------------------


async def list_endpoints(
    pool: asyncpg.Pool, account_id: UUID, *, after: Position | None, limit: int
) -> list[WebhookEndpoint]:
    """Up to `limit` endpoints of the account after `after`, newest first."""
    if after is None:
        rows = await pool.fetch(
            f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE account_id = $1 "
            "ORDER BY created_at DESC, id DESC LIMIT $2",
            account_id,
            limit,
        )
    else:
        rows = await pool.fetch(
            f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE account_id = $1 AND (created_at, id) < ($3, $4) "
            "ORDER BY created_at DESC, id DESC LIMIT $2",
            account_id,
            limit,
            after.created_at,
            after.item_id,
        )
    return [_endpoint(row) for row in rows]


async def get_endpoint(pool: asyncpg.Pool, account_id: UUID, webhook_id: UUID) -> WebhookEndpoint | None:
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND account_id = $2", webhook_id, account_id
    )
    return _endpoint(row) if row is not None else None


async def list_deliveries(
    pool: asyncpg.Pool, account_id: UUID, webhook_id: UUID, *, after: Position | None, limit: int
) -> list[dict[str, Any]] | None:
    """Up to `limit` deliveries of the endpoint after `after`, newest first, each with `attempt_log` (its newest
    ATTEMPTS_SHOWN attempts, newest first); None when the account has no such endpoint."""
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        if not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = $1 AND account_id = $2)", webhook_id, account_id
        ):
            return None
        keyset = "" if after is None else "AND (created_at, id) < ($4, $5) "
        rows = await conn.fetch(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 AND account_id = $2 {keyset}"
            "ORDER BY created_at DESC, id DESC LIMIT $3",
            webhook_id,
            account_id,
            limit,
            *(() if after is None else (after.created_at, after.item_id)),
        )
        deliveries = [dict(row) for row in rows]
        by_id: dict[UUID, dict[str, Any]] = {row["id"]: row for row in deliveries}
        for delivery in deliveries:
            delivery["attempt_log"] = []
        if by_id:
            attempts = await conn.fetch(
                "SELECT delivery_id, attempt, started_at, status_code, latency_ms, error, response_excerpt FROM ("
                "  SELECT a.*, row_number() OVER (PARTITION BY delivery_id ORDER BY attempt DESC) AS newest"
                "  FROM webhook_attempts a WHERE delivery_id = ANY($1::uuid[])"
                ") ranked WHERE newest <= $2 ORDER BY delivery_id, attempt DESC",
                list(by_id),
                ATTEMPTS_SHOWN,
            )
            for attempt in attempts:
                by_id[attempt["delivery_id"]]["attempt_log"].append(dict(attempt))
    return deliveries


# --- operators: key rotation of TAIFA_WEBHOOK_SECRET_KEYS ---------------------------------------------------


async def reencrypt_secrets(pool: asyncpg.Pool, box: WebhookSecretBox, batch_size: int = 500) -> int:
    """Seal again under the box's primary key every stored secret (current and previous) sealed under another key;
    the number of endpoints changed. Each batch is one transaction with its rows locked, so a rotation running
    at the same time waits instead of being overwritten. WebhookKeyError when a secret's key is not in the box."""
    changed = 0
    after = UUID(int=0)
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, secret_ciphertext, previous_secret_ciphertext FROM webhook_endpoints WHERE id > $1 "
                "ORDER BY id LIMIT $2 FOR UPDATE",
                after,
                batch_size,
            )
            for row in rows:
                sealed = [row["secret_ciphertext"], row["previous_secret_ciphertext"]]
                if not any(c is not None and box.needs_reencryption(c) for c in sealed):
                    continue
                current, previous = (
                    None if c is None else box.encrypt(box.decrypt(c, row["id"]), row["id"]) for c in sealed
                )
                await conn.execute(
                    "UPDATE webhook_endpoints SET secret_ciphertext = $2, previous_secret_ciphertext = $3 "
                    "WHERE id = $1",
                    row["id"],
                    current,
                    previous,
                )
                changed += 1
        if len(rows) < batch_size:
            return changed
        after = rows[-1]["id"]

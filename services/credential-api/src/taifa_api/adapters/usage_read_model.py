# ruff: noqa: S608 - SQL is built only from constants of this module; values are always bind parameters.
"""Queries of the projector's usage read model (`rm_usage_windows`: one row per credential, hour and generation of
the relays' Redis hash, the relay's totals as the projector applied them from the usage topic; an hour's rows add
up); the API only reads it.

Buckets are summed in PostgreSQL (`date_trunc` in UTC), so a 90-day range costs one row per credential and
bucket, never one per window.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from taifa_api.domain.usage import Counts, UsageRange, add_window

PerCredential = dict[UUID, dict[datetime, Counts]]

_RANGE = "account_id = $1 AND window_start >= $3 AND window_start < $4"
_TOTALS = (
    "SELECT credential_id, date_trunc($2::text, window_start, 'UTC') AS bucket, sum(messages) AS messages, "
    "sum(recipients) AS recipients, sum(bytes) AS bytes, sum(auth_successes) AS auth_successes, "
    "sum(auth_failures) AS auth_failures FROM rm_usage_windows WHERE " + _RANGE
)
_REFUSED = (
    "SELECT w.credential_id, date_trunc($2::text, w.window_start, 'UTC') AS bucket, r.key AS reason, "
    "sum(r.value::bigint) AS n FROM rm_usage_windows w CROSS JOIN LATERAL jsonb_each_text(w.refused) r WHERE "
    + _RANGE.replace("account_id", "w.account_id").replace("window_start", "w.window_start")
    + " AND jsonb_typeof(w.refused) = 'object'"
)


async def usage(
    pool: asyncpg.Pool, account_id: UUID, usage_range: UsageRange, credential_id: UUID | None = None
) -> PerCredential:
    """The account's totals per credential and bucket in the range (only credentials and buckets with windows);
    one credential's when `credential_id` is given."""
    args: list[object] = [account_id, usage_range.granularity, usage_range.first, usage_range.last_bucket_end()]
    only = ""
    if credential_id is not None:
        args.append(credential_id)
        only = " AND credential_id = $5"
    found: PerCredential = {}
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        totals = await conn.fetch(f"{_TOTALS}{only} GROUP BY 1, 2", *args)
        refused = await conn.fetch(
            f"{_REFUSED}{only.replace('credential_id', 'w.credential_id')} GROUP BY 1, 2, 3", *args
        )
    for row in totals:
        add_window(found.setdefault(row["credential_id"], {}).setdefault(row["bucket"], Counts()), dict(row))
    for row in refused:
        counts = found.setdefault(row["credential_id"], {}).setdefault(row["bucket"], Counts())
        add_window(counts, {"refused": {row["reason"]: row["n"]}})
    return found


async def owns_credential(pool: asyncpg.Pool, account_id: UUID, credential_id: UUID) -> bool:
    """True when the credential exists and is the account's (another account's is as unknown: 404)."""
    found = await pool.fetchval(
        "SELECT 1 FROM rm_smtp_credentials WHERE credential_id = $1 AND account_id = $2", credential_id, account_id
    )
    return found is not None

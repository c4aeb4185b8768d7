"""The usage read model in PostgreSQL (`ports.UsageStore`): `rm_usage_windows`, and the last use of each credential
and secret. The SQL runs `domain.usage.merge_window`'s rule on the row of the window's credential, hour and
generation: GREATEST per counter, per refusal reason and per last-use time (a redelivered, replayed or older window
changes nothing); the rows of an hour's generations add up (migration 0008)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg
from taifa_events.audit import audit_row_from_quota
from taifa_events.usage import QuotaReached, UsageWindow

from taifa_projector.adapters import audit_feed
from taifa_projector.adapters.driver_errors import postgres_errors

_COUNTERS = ("messages", "recipients", "bytes", "auth_successes", "auth_failures")

APPLY_WINDOW = f"""
INSERT INTO rm_usage_windows AS w (credential_id, account_id, window_start, {", ".join(_COUNTERS)}, refused,
    last_used_at, last_used_ip, secrets_last_used, reported_at, generation)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11::inet, $12::jsonb, $13, $14)
ON CONFLICT (credential_id, window_start, generation) DO UPDATE SET
    {", ".join(f"{c} = GREATEST(w.{c}, EXCLUDED.{c})" for c in _COUNTERS)},
    refused = (
        SELECT coalesce(jsonb_object_agg(k, GREATEST(coalesce((w.refused ->> k)::bigint, 0),
                                                     coalesce((EXCLUDED.refused ->> k)::bigint, 0))), '{{}}'::jsonb)
        FROM (SELECT jsonb_object_keys(w.refused) UNION SELECT jsonb_object_keys(EXCLUDED.refused)) AS keys(k)
    ),
    last_used_ip = CASE WHEN EXCLUDED.last_used_at IS NOT NULL
                         AND (w.last_used_at IS NULL OR EXCLUDED.last_used_at > w.last_used_at)
                        THEN EXCLUDED.last_used_ip ELSE w.last_used_ip END,
    last_used_at = GREATEST(w.last_used_at, EXCLUDED.last_used_at),
    secrets_last_used = (
        SELECT coalesce(jsonb_object_agg(k, to_jsonb(GREATEST((w.secrets_last_used ->> k)::timestamptz,
                                                              (EXCLUDED.secrets_last_used ->> k)::timestamptz))),
                        '{{}}'::jsonb)
        FROM (SELECT jsonb_object_keys(w.secrets_last_used)
              UNION SELECT jsonb_object_keys(EXCLUDED.secrets_last_used)) AS keys(k)
    ),
    reported_at = GREATEST(w.reported_at, EXCLUDED.reported_at)
"""  # noqa: S608 - column names are module constants
TOUCH_CREDENTIAL = """
UPDATE rm_smtp_credentials SET last_used_at = $2, last_used_ip = $3::inet
WHERE credential_id = $1 AND (last_used_at IS NULL OR last_used_at < $2)
"""
LAST_USE_OF_KEY = """
UPDATE rm_credential_secrets SET last_used_at = $3
WHERE credential_id = $1 AND secret_id = $2 AND (last_used_at IS NULL OR last_used_at < $3)
"""


def restore_last_use_sql(credentials: str, secrets: str) -> tuple[str, str]:
    """Statements that set the last-use columns of `credentials` / `secrets` (e.g. the tables a rebuild is about to
    swap in) from `rm_usage_windows`, which a rebuild keeps: usage is not in the event store."""
    return (
        f"""
        UPDATE {credentials} c SET last_used_at = u.at, last_used_ip = u.ip
        FROM (SELECT DISTINCT ON (credential_id) credential_id, last_used_at AS at, last_used_ip AS ip
              FROM rm_usage_windows WHERE last_used_at IS NOT NULL
              ORDER BY credential_id, last_used_at DESC) u
        WHERE c.credential_id = u.credential_id
        """,  # noqa: S608 - table names are module constants
        f"""
        UPDATE {secrets} s SET last_used_at = u.at
        FROM (SELECT credential_id, key::uuid AS secret_id, max(value::timestamptz) AS at
              FROM rm_usage_windows, jsonb_each_text(secrets_last_used) GROUP BY 1, 2) u
        WHERE s.credential_id = u.credential_id AND s.secret_id = u.secret_id
        """,  # noqa: S608
    )


def _row(w: UsageWindow) -> tuple[object, ...]:
    return (
        w.credential_id,
        w.account_id,
        w.window_start,
        w.messages,
        w.recipients,
        w.bytes,
        w.auth_successes,
        w.auth_failures,
        json.dumps(w.refused),
        w.last_used_at,
        w.last_used_ip,
        json.dumps({str(k): v.isoformat() for k, v in w.secrets_last_used.items()}),
        w.reported_at,
        w.generation,
    )


class PostgresUsageStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @postgres_errors
    async def apply_windows(self, windows: Sequence[UsageWindow], notices: Sequence[QuotaReached] = ()) -> None:
        """One transaction per batch; windows in a stable order so concurrent appliers never deadlock. Quota notices
        go to the audit feed (a redelivered notice has the same id: once)."""
        ordered = sorted(windows, key=lambda w: (str(w.credential_id), w.window_start, w.generation))
        async with self.pool.acquire() as conn, conn.transaction():
            await audit_feed.write_rows(conn, sorted({audit_row_from_quota(n) for n in notices}))
            if not ordered:
                return
            await conn.executemany(APPLY_WINDOW, [_row(w) for w in ordered])
            used = [(w.credential_id, w.last_used_at, w.last_used_ip) for w in ordered if w.last_used_at is not None]
            if used:
                await conn.executemany(TOUCH_CREDENTIAL, used)
            secrets = [(w.credential_id, s, at) for w in ordered for s, at in sorted(w.secrets_last_used.items())]
            if secrets:
                await conn.executemany(LAST_USE_OF_KEY, secrets)

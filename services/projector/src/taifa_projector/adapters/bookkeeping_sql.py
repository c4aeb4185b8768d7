"""The projector's bookkeeping statements in PostgreSQL: processed event ids, consumed offsets, pruning, and the
per-account locks of live batches (`postgres`)."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

import asyncpg

RECORD_PROCESSED = (
    "WITH batch AS (SELECT * FROM unnest($1::uuid[], $2::bigint[]) AS b(event_id, position)), "
    "inserted AS (INSERT INTO projector_processed_events (event_id, position) SELECT * FROM batch "
    "ON CONFLICT DO NOTHING RETURNING event_id) "
    "SELECT b.event_id FROM batch b LEFT JOIN inserted i USING (event_id) WHERE i.event_id IS NULL"
)
# One chunk of the oldest processed-event ids; only one instance prunes at a time (the others skip).
PRUNE_LOCK = 0x7461_6966_6170_7275  # "taifapru": pg_try_advisory_xact_lock key
PRUNE_PROCESSED = (
    "DELETE FROM projector_processed_events WHERE event_id IN "
    "(SELECT event_id FROM projector_processed_events WHERE position < $1 LIMIT $2)"
)
# Batches touching the same account run one after another (two-key advisory locks, taken in key order before any
# row is read): an account's plan and its new credentials may be in flight on two instances at once (topics
# `accounts` and `smtp-credentials`), and each must see the other's commit, or the entry keeps the wrong plan.
ACCOUNT_LOCK_SPACE = 0x7461_6163  # "taac"
LOCK_ACCOUNTS = "SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::int[]) AS k"  # in the array's order
# Records the batch's offsets and returns those recorded before (the statement's snapshot: a concurrent owner's
# newer commit only makes them lower, never a false alarm) for `redis_scripts.CHECK_CONTINUITY`. One round trip.
RECORD_OFFSETS = (
    "WITH batch AS (SELECT * FROM unnest($2::text[], $3::int[], $4::bigint[]) AS b (topic, partition, next_offset)), "
    "previous AS (SELECT o.topic, o.partition, o.next_offset FROM projector_offsets o "
    "JOIN batch USING (topic, partition) WHERE o.group_id = $1), "
    "recorded AS (INSERT INTO projector_offsets (group_id, topic, partition, next_offset) "
    "SELECT $1, topic, partition, next_offset FROM batch "
    "ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()) "
    "SELECT topic, partition, next_offset FROM previous"
)


def account_lock_keys(accounts: Iterable[UUID]) -> list[int]:
    """The accounts' lock keys (32 bits of each id; two accounts sharing one only wait for each other), sorted: two
    batches always take their locks in the same order, so neither holds one the other waits for first."""
    return sorted({(a.int & 0xFFFF_FFFF) - (1 << 31) for a in accounts})


async def lock_accounts(conn: asyncpg.Connection, accounts: Iterable[UUID]) -> None:
    """Wait for, and hold until the transaction ends, the locks of `accounts`."""
    await conn.execute(LOCK_ACCOUNTS, ACCOUNT_LOCK_SPACE, account_lock_keys(accounts))

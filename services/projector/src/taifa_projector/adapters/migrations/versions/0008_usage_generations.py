"""Usage windows by generation: `rm_usage_windows` keeps one row per credential, UTC hour and generation of the Redis
hash the relays counted into (`taifa_events.usage.FIELD_GENERATION`; "" for hashes from before generations).

A hash that Redis lost (a flush, a failover to an empty replica) is made again from zero with a new generation: its
totals are a row of their own, added to the row already published instead of hidden under it by GREATEST until they
passed it. Readers sum the rows of an hour.

Rollout: this one changes a key, so it is not "only add" (deploy/README.md, zero-downtime rollout). Between this
migration and the projectors' rollout, a projector of the previous release cannot apply usage windows (its
`ON CONFLICT (credential_id, window_start)` has no constraint left to match): its usage consumer retries, commits
nothing, and the new projectors apply those records, so usage only lags; nothing is lost. Roll the projectors
right after the migrations Job. The new key's index is built without blocking writes (CONCURRENTLY) and then
becomes the primary key in one short lock.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_KEY = "rm_usage_windows_generation_key"


def upgrade() -> None:
    op.execute("ALTER TABLE rm_usage_windows ADD COLUMN generation text NOT NULL DEFAULT ''")  # no rewrite
    with op.get_context().autocommit_block():  # CONCURRENTLY: not in a transaction, writes go on meanwhile
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_KEY}")  # left invalid by an interrupted run
        op.execute(
            f"CREATE UNIQUE INDEX CONCURRENTLY {_KEY} ON rm_usage_windows (credential_id, window_start, generation)"
        )
    op.execute(
        f"ALTER TABLE rm_usage_windows DROP CONSTRAINT rm_usage_windows_pkey, "
        f"ADD CONSTRAINT rm_usage_windows_pkey PRIMARY KEY USING INDEX {_KEY}"
    )


def downgrade() -> None:
    # One row per hour again: the one with the most messages (the rule before generations was GREATEST).
    op.execute(
        """
        DELETE FROM rm_usage_windows a USING rm_usage_windows b
        WHERE a.credential_id = b.credential_id AND a.window_start = b.window_start
          AND (a.messages, a.generation) < (b.messages, b.generation)
        """
    )
    op.execute("ALTER TABLE rm_usage_windows DROP CONSTRAINT rm_usage_windows_pkey")
    op.execute("ALTER TABLE rm_usage_windows DROP COLUMN generation")
    op.execute("ALTER TABLE rm_usage_windows ADD PRIMARY KEY (credential_id, window_start)")

"""Domains can be released (status `released`), are re-checked, and remember when a failure was last recorded.

- `released` frees the name: the one-verified-owner index only covers `verified`, and an account's
  uniqueness of a name only covers domains that are not released (the account may register it again).
- `verification_checked_at` / `verification_missing_since`: the re-check's state (no event per check).
- `failure_recorded_at`: when the last `DomainVerificationFailed` was appended (at most one an hour
  unless the reason changes: every append takes the global append lock).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE domains DROP CONSTRAINT domains_status_check")
    op.execute(
        "ALTER TABLE domains ADD CONSTRAINT domains_status_check CHECK (status IN ('pending', 'verified', 'released'))"
    )
    op.execute(
        """
        ALTER TABLE domains
            ADD COLUMN released_at                 timestamptz NULL,
            ADD COLUMN verification_checked_at     timestamptz NULL,
            ADD COLUMN verification_missing_since  timestamptz NULL,
            ADD COLUMN failure_recorded_at         timestamptz NULL
        """
    )
    op.execute("ALTER TABLE domains DROP CONSTRAINT domains_account_id_name_key")
    op.execute(
        "CREATE UNIQUE INDEX domains_one_live_per_account ON domains (account_id, name) WHERE status <> 'released'"
    )
    # The re-check picks verified domains whose last check is oldest first.
    op.execute(
        "CREATE INDEX domains_recheck_due ON domains (verification_checked_at NULLS FIRST) WHERE status = 'verified'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX domains_recheck_due")
    op.execute("DROP INDEX domains_one_live_per_account")
    # Refused (by the constraints below) while released rows exist: they cannot be expressed in 0001's schema.
    op.execute("ALTER TABLE domains ADD CONSTRAINT domains_account_id_name_key UNIQUE (account_id, name)")
    op.execute(
        """
        ALTER TABLE domains
            DROP COLUMN failure_recorded_at,
            DROP COLUMN verification_missing_since,
            DROP COLUMN verification_checked_at,
            DROP COLUMN released_at
        """
    )
    op.execute("ALTER TABLE domains DROP CONSTRAINT domains_status_check")
    op.execute("ALTER TABLE domains ADD CONSTRAINT domains_status_check CHECK (status IN ('pending', 'verified'))")

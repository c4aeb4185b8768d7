"""The credential lifecycle's write side: status, suspension, restrictions, and secrets with their grace period.

- `credentials.status` (`active | suspended | deactivated`), kept consistent with `is_active` (False only once
  deactivated): a suspended credential keeps the domain's one slot (the partial unique index on `is_active`)
  and counts against the plan, as an active one does.
- `credentials.allowed_cidrs` / `expires_at` / `limit_messages_per_minute` / `limit_messages_per_day`.
- `credential_secrets`: every secret of a credential (only its hash); the newest has no `expires_at`, an older
  one is valid until `expires_at` unless `revoked_at` ended it. Existing credentials get their first secret with
  the id the events' upcaster derives (`taifa_events.secrets.initial_secret_id`) and the hash they hold.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from taifa_events.secrets import initial_secret_id

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE credentials
            ADD COLUMN status                     text NOT NULL DEFAULT 'active',
            ADD COLUMN suspended_at               timestamptz NULL,
            ADD COLUMN suspension_reason          text NULL CHECK (char_length(suspension_reason) <= 200),
            ADD COLUMN expires_at                 timestamptz NULL,
            ADD COLUMN allowed_cidrs              text[] NOT NULL DEFAULT '{}'
                CHECK (cardinality(allowed_cidrs) <= 64),
            ADD COLUMN limit_messages_per_minute  integer NULL CHECK (limit_messages_per_minute >= 1),
            ADD COLUMN limit_messages_per_day     integer NULL CHECK (limit_messages_per_day >= 1)
        """
    )
    op.execute("UPDATE credentials SET status = 'deactivated' WHERE NOT is_active")
    op.execute(
        "ALTER TABLE credentials ADD CONSTRAINT credentials_status_check "
        "CHECK (status IN ('active', 'suspended', 'deactivated') AND is_active = (status <> 'deactivated'))"
    )
    op.execute(
        """
        CREATE TABLE credential_secrets (
            secret_id      uuid PRIMARY KEY,
            credential_id  uuid NOT NULL REFERENCES credentials (credential_id),
            secret_hash    text NOT NULL CHECK (secret_hash ~ '^[0-9a-f]{64}$'),
            created_at     timestamptz NOT NULL,
            expires_at     timestamptz NULL,
            revoked_at     timestamptz NULL
        )
        """
    )
    op.execute("CREATE INDEX credential_secrets_of_credential ON credential_secrets (credential_id, created_at DESC)")
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT credential_id, secret_hash, created_at FROM credentials")).fetchall()
    for credential_id, secret_hash, created_at in rows:
        bind.execute(
            sa.text(
                "INSERT INTO credential_secrets (secret_id, credential_id, secret_hash, created_at) "
                "VALUES (:secret_id, :credential_id, :secret_hash, :created_at)"
            ),
            {
                "secret_id": initial_secret_id(credential_id),
                "credential_id": credential_id,
                "secret_hash": secret_hash,
                "created_at": created_at,
            },
        )


def downgrade() -> None:
    op.execute("DROP TABLE credential_secrets")
    op.execute("ALTER TABLE credentials DROP CONSTRAINT credentials_status_check")
    op.execute(
        """
        ALTER TABLE credentials
            DROP COLUMN limit_messages_per_day,
            DROP COLUMN limit_messages_per_minute,
            DROP COLUMN allowed_cidrs,
            DROP COLUMN expires_at,
            DROP COLUMN suspension_reason,
            DROP COLUMN suspended_at,
            DROP COLUMN status
        """
    )

"""Credential lifecycle (issue 15): status, restrictions and secrets in the read model, cache entry format 2.

- `rm_smtp_credentials` gains `status`, `suspended_at`, `suspension_reason`, `expires_at`, `allowed_cidrs`,
  `limit_messages_per_minute`, `limit_messages_per_day` (appended in that order to the row type
  `projector_credential_row`, as `CredentialRow` lists them), and `last_used_at` / `last_used_ip`, which the
  API shows and which stay null until usage is recorded (not projector columns).
- `rm_credential_secrets`: every secret of every credential (history kept), with its expiry and revocation. The
  hash is kept for the auth-cache entry; the API never selects it.
- `projector_auth_entries` gains the format-2 fields as the cache's own text (`status`, `secrets`, `expires_at`,
  `allowed_cidrs`, `limits`).
Existing rows are filled as the upcaster reads old events: one secret with the derived id (`initial_secret_id`),
status from `is_active`, no restrictions. The hash of a credential deactivated before this migration is gone
from the read side (its tombstone kept none): its secret row gets the tombstone hash until a rebuild from
the event store, which restores the history exactly.

Revision ID: 0005
Revises: 0004
"""

import json

import sqlalchemy as sa
from alembic import op
from taifa_events import initial_secret_id

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TOMBSTONE_HASH = "0" * 64
NO_LIMITS_JSON = '{"messages_per_minute":null,"messages_per_day":null}'


def _sql_literal(text: str) -> str:
    """`text` inside a statement op.execute runs through sqlalchemy.text, where `:name` is a bind parameter."""
    return text.replace(":", "\\:")


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE rm_smtp_credentials
            ADD COLUMN status text NOT NULL DEFAULT 'active',
            ADD COLUMN suspended_at timestamptz NULL,
            ADD COLUMN suspension_reason text NULL,
            ADD COLUMN expires_at timestamptz NULL,
            ADD COLUMN allowed_cidrs text[] NOT NULL DEFAULT '{}',
            ADD COLUMN limit_messages_per_minute integer NULL,
            ADD COLUMN limit_messages_per_day integer NULL,
            ADD COLUMN last_used_at timestamptz NULL,
            ADD COLUMN last_used_ip inet NULL
        """
    )
    op.execute("UPDATE rm_smtp_credentials SET status = 'deactivated' WHERE NOT is_active")
    op.execute(
        "ALTER TABLE rm_smtp_credentials ADD CONSTRAINT rm_smtp_credentials_status_check "
        "CHECK (status IN ('active', 'suspended', 'deactivated'))"
    )
    op.execute(
        """
        ALTER TYPE projector_credential_row
            ADD ATTRIBUTE status text,
            ADD ATTRIBUTE suspended_at timestamptz,
            ADD ATTRIBUTE suspension_reason text,
            ADD ATTRIBUTE expires_at timestamptz,
            ADD ATTRIBUTE allowed_cidrs text[],
            ADD ATTRIBUTE limit_messages_per_minute integer,
            ADD ATTRIBUTE limit_messages_per_day integer
        """
    )
    op.execute(
        """
        CREATE TABLE rm_credential_secrets (
            credential_id  uuid NOT NULL,
            secret_id      uuid NOT NULL,
            secret_hash    text NOT NULL,
            hash_scheme    text NOT NULL,
            created_at     timestamptz NOT NULL,
            expires_at     timestamptz NULL,
            revoked_at     timestamptz NULL,
            position       bigint NOT NULL,
            PRIMARY KEY (credential_id, secret_id)
        )
        """
    )
    op.execute(
        """
        CREATE TYPE projector_secret_row AS (
            credential_id uuid, secret_id uuid, secret_hash text, hash_scheme text, created_at timestamptz,
            expires_at timestamptz, revoked_at timestamptz, position bigint
        )
        """
    )
    op.execute(
        f"""
        ALTER TABLE projector_auth_entries
            ADD COLUMN status text NOT NULL DEFAULT 'active',
            ADD COLUMN secrets text NOT NULL DEFAULT '[]',
            ADD COLUMN expires_at bigint NULL,
            ADD COLUMN allowed_cidrs text NOT NULL DEFAULT '[]',
            ADD COLUMN limits text NOT NULL DEFAULT '{_sql_literal(NO_LIMITS_JSON)}'
        """
    )
    op.execute("UPDATE projector_auth_entries SET status = 'deactivated' WHERE NOT active")
    op.execute(
        """
        ALTER TYPE projector_auth_row
            ADD ATTRIBUTE status text,
            ADD ATTRIBUTE secrets text,
            ADD ATTRIBUTE expires_at bigint,
            ADD ATTRIBUTE allowed_cidrs text,
            ADD ATTRIBUTE limits text
        """
    )
    _backfill()


def _backfill() -> None:
    """One secret per existing credential, and the `secrets` text of every existing entry (format 2's form)."""
    bind = op.get_bind()
    hashes = {
        credential_id: (secret_hash, hash_scheme)
        for credential_id, secret_hash, hash_scheme in bind.execute(
            sa.text("SELECT credential_id, secret_hash, hash_scheme FROM projector_auth_entries")
        ).fetchall()
    }
    credentials = bind.execute(sa.text("SELECT credential_id, created_at, position FROM rm_smtp_credentials"))
    for credential_id, created_at, position in credentials.fetchall():
        secret_hash, hash_scheme = hashes.get(credential_id, (TOMBSTONE_HASH, "sha256"))
        bind.execute(
            sa.text(
                "INSERT INTO rm_credential_secrets (credential_id, secret_id, secret_hash, hash_scheme, created_at, "
                "position) VALUES (:credential_id, :secret_id, :secret_hash, :hash_scheme, :created_at, :position)"
            ),
            {
                "credential_id": credential_id, "secret_id": initial_secret_id(credential_id),
                "secret_hash": secret_hash, "hash_scheme": hash_scheme, "created_at": created_at, "position": position,
            },
        )  # fmt: skip
    for credential_id, (secret_hash, hash_scheme) in hashes.items():
        secrets = [{"id": str(initial_secret_id(credential_id)), "hash": secret_hash, "scheme": hash_scheme,
                    "expires_at": None}]  # fmt: skip
        bind.execute(
            sa.text("UPDATE projector_auth_entries SET secrets = :secrets WHERE credential_id = :credential_id"),
            {"secrets": json.dumps(secrets, separators=(",", ":")), "credential_id": credential_id},
        )


def downgrade() -> None:
    op.execute(
        "ALTER TYPE projector_auth_row DROP ATTRIBUTE limits, DROP ATTRIBUTE allowed_cidrs, "
        "DROP ATTRIBUTE expires_at, DROP ATTRIBUTE secrets, DROP ATTRIBUTE status"
    )
    op.execute(
        "ALTER TABLE projector_auth_entries DROP COLUMN limits, DROP COLUMN allowed_cidrs, DROP COLUMN expires_at, "
        "DROP COLUMN secrets, DROP COLUMN status"
    )
    op.execute("DROP TYPE projector_secret_row")
    op.execute("DROP TABLE rm_credential_secrets")
    op.execute(
        "ALTER TYPE projector_credential_row DROP ATTRIBUTE limit_messages_per_day, "
        "DROP ATTRIBUTE limit_messages_per_minute, DROP ATTRIBUTE allowed_cidrs, DROP ATTRIBUTE expires_at, "
        "DROP ATTRIBUTE suspension_reason, DROP ATTRIBUTE suspended_at, DROP ATTRIBUTE status"
    )
    op.execute(
        "ALTER TABLE rm_smtp_credentials DROP CONSTRAINT rm_smtp_credentials_status_check, "
        "DROP COLUMN last_used_ip, DROP COLUMN last_used_at, DROP COLUMN limit_messages_per_day, "
        "DROP COLUMN limit_messages_per_minute, DROP COLUMN allowed_cidrs, DROP COLUMN expires_at, "
        "DROP COLUMN suspension_reason, DROP COLUMN suspended_at, DROP COLUMN status"
    )

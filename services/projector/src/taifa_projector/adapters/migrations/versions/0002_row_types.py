"""Row types for the live batch writes: a batch passes one array of rows per table, not one array per
column (asyncpg type-checks every element of every array argument; a row is one element).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TYPE projector_credential_row AS (
            credential_id uuid, account_id uuid, domain_id uuid, domain text, username text,
            is_active boolean, created_at timestamptz, deactivated_at timestamptz, position bigint
        )
        """
    )
    op.execute(
        """
        CREATE TYPE projector_domain_row AS (
            domain_id uuid, account_id uuid, name text, status text, status_reason text,
            verification_name text, verification_value text, created_at timestamptz,
            verified_at timestamptz, position bigint
        )
        """
    )
    op.execute(
        """
        CREATE TYPE projector_auth_row AS (
            username text, credential_id uuid, account_id uuid, domain_id uuid, domain text,
            secret_hash text, hash_scheme text, active boolean, position bigint
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TYPE projector_auth_row, projector_domain_row, projector_credential_row")

"""Revoked session JWTs, by `jti` (`taifa-admin session revoke`).

Not an event: a session is the API's own authentication of a browser, nothing downstream projects it.
A row with `expires_at` (the token's own `exp`) may be deleted once that has passed; one without is kept.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE revoked_sessions (
            jti         text PRIMARY KEY CHECK (length(jti) BETWEEN 1 AND 255),
            revoked_at  timestamptz NOT NULL,
            expires_at  timestamptz
        )
        """
    )
    op.execute("CREATE INDEX revoked_sessions_expiry ON revoked_sessions (expires_at) WHERE expires_at IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP TABLE revoked_sessions")

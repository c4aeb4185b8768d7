"""How each verified domain was verified: `domains.verification_method` (`dns` | `operator`, NULL before).

The daily re-check looks up the TXT record of domains verified through DNS only: an operator's `taifa-admin domain
verify --force` verifies a domain without DNS, and the re-check released it three days later (the record it never
needed was missing). Filled for the domains verified now from their latest `DomainVerified` event (its `method`);
an unknown method reads as `dns`, as before. Only adds (expand-then-contract).

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE domains ADD COLUMN verification_method text NULL "
        "CHECK (verification_method IN ('dns', 'operator'))"
    )
    op.execute(
        """
        UPDATE domains d SET verification_method = latest.method
        FROM (
            SELECT DISTINCT ON (stream_id) stream_id, data ->> 'method' AS method
            FROM event_store WHERE event_type = 'DomainVerified'
            ORDER BY stream_id, position DESC
        ) latest
        WHERE d.domain_id = latest.stream_id AND d.status = 'verified' AND latest.method IN ('dns', 'operator')
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE domains DROP COLUMN verification_method")

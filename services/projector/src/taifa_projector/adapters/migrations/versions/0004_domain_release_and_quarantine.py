"""Released domains (DomainReleased) and the quarantine of credentials whose deactivation was dead-lettered.

- `rm_domains.released_at` and the status `released` (the API hides released domains); the column goes last,
  in the table and in the row type `projector_domain_row`, as `DomainRow` lists it.
- `projector_quarantined_credentials`: a deactivation the read model refused (dead-lettered) is recorded here
  in a transaction of its own, with only values PostgreSQL cannot refuse (a uuid and a bigint); every cache
  rebuild from the read model writes those credentials as tombstones, so a flush never brings them back.
  Not part of the rebuilt read side: a rebuild keeps it (it only ever revokes).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE rm_domains ADD COLUMN released_at timestamptz NULL")
    # NOT VALID, then VALIDATE: the check of the existing rows does not hold the table's exclusive lock.
    op.execute(
        "ALTER TABLE rm_domains DROP CONSTRAINT rm_domains_status_check, ADD CONSTRAINT rm_domains_status_check "
        "CHECK (status IN ('pending', 'verified', 'released')) NOT VALID"
    )
    op.execute("ALTER TABLE rm_domains VALIDATE CONSTRAINT rm_domains_status_check")
    op.execute("ALTER TYPE projector_domain_row ADD ATTRIBUTE released_at timestamptz")
    op.execute(
        """
        CREATE TABLE projector_quarantined_credentials (
            credential_id  uuid PRIMARY KEY,
            position       bigint NOT NULL,
            recorded_at    timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS projector_quarantined_credentials")
    op.execute("ALTER TYPE projector_domain_row DROP ATTRIBUTE released_at")
    op.execute(
        "ALTER TABLE rm_domains DROP CONSTRAINT rm_domains_status_check, ADD CONSTRAINT rm_domains_status_check "
        "CHECK (status IN ('pending', 'verified'))"
    )
    op.execute("ALTER TABLE rm_domains DROP COLUMN released_at")

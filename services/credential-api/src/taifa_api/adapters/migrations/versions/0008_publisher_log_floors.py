"""The outbox publisher keeps the bounds it judges the broker's logs by with its progress:
`publisher_progress.log_floors` (per `topic/partition`, the lowest offset the broker acknowledged in the last round
that wrote to it). Kept in memory only, they were lost at every restart or change of leader, and a topic lost while
no publisher ran (re-created, or a broker back empty with another topic written meanwhile) went unnoticed: its events
were never sent again. Only adds (expand-then-contract): a previous release leaves the column as it is.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE publisher_progress ADD COLUMN log_floors jsonb NOT NULL DEFAULT '{}'::jsonb")


def downgrade() -> None:
    op.execute("ALTER TABLE publisher_progress DROP COLUMN log_floors")

"""A BRIN index on `projector_processed_events.position`, so the oldest ids can be pruned without a full scan.

Positions grow with insertion order, so a block-range index stays a few pages large and costs next to nothing
per inserted row (a B-tree would add a page write per batch and grow with the table).

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
        "CREATE INDEX projector_processed_events_position_brin ON projector_processed_events USING brin (position)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS projector_processed_events_position_brin")

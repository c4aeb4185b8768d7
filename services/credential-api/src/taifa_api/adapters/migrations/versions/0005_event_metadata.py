"""Placeholder for the event store's metadata column (issue 17, owned by the AUDIT change, which fills it in).

Revision ID: 0005
Revises: 0004
"""

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

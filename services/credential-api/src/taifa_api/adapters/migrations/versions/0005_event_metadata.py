"""The event store's `metadata` column (issue 17): who caused each event, from where, in which request.

`{"actor": {"type": "api_key" | "session" | "operator" | "system", "id": ...}, "source_ip": ..., "request_id": ...}`
(taifa_events.metadata.EventMetadata), written by every append from now on. Existing events keep NULL: they read
as actor `unknown` (the log of record is append-only and is never rewritten). Adding a nullable column without a
default touches no row, so the append-only triggers are not involved.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE event_store ADD COLUMN metadata jsonb NULL")


def downgrade() -> None:
    op.execute("ALTER TABLE event_store DROP COLUMN metadata")

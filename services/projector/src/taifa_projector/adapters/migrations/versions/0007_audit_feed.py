"""The audit feed (issue 17): `rm_audit_events`, one row per event customers see (CONTRACT §8).

Columns in the order of `taifa_events.audit.AuditRow`. `data` holds only the allow-listed fields of the event
(never a secret or a hash); `account_id` scopes every read. Newest first is (occurred_at, id) descending, the
API's keyset pages (on the primary key, and on an index by subject). `position` is the event store's (0 for quota
notices, which come from the usage topic and are not in the event store, so a rebuild keeps them). Written in the
same transaction as the batch that applies the events; rebuilt with the other read models (swapped in whole).

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The primary key is also the account feed's index (read backwards: newest first), and an event's account and
    # time never change, so it dedupes a redelivered event as well as the id alone would: one index fewer to
    # maintain per event. `data` is `json` (kept as written: the fields in their order; no binary conversion).
    op.execute(
        """
        CREATE TABLE rm_audit_events (
            id            uuid NOT NULL,
            account_id    uuid NOT NULL,
            occurred_at   timestamptz NOT NULL,
            position      bigint NOT NULL CHECK (position >= 0),
            type          text NOT NULL,
            subject_type  text NOT NULL,
            subject_id    uuid NOT NULL,
            actor_type    text NOT NULL,
            actor_id      text NULL,
            source_ip     text NULL,
            request_id    text NULL,
            data          json NOT NULL,
            PRIMARY KEY (account_id, occurred_at, id)
        )
        """
    )
    op.execute("CREATE INDEX rm_audit_events_subject ON rm_audit_events (subject_id, occurred_at DESC, id DESC)")


def downgrade() -> None:
    op.execute("DROP TABLE rm_audit_events")

"""Read models the API reads, the auth-cache mirror, and the projector's bookkeeping.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Read models (columns and indexes fixed by docs/interfaces.md; the API reads them).
    op.execute(
        """
        CREATE TABLE rm_smtp_credentials (
            credential_id   uuid PRIMARY KEY,
            account_id      uuid NOT NULL,
            domain_id       uuid NOT NULL,
            domain          text NOT NULL,
            username        text NOT NULL,
            is_active       boolean NOT NULL,
            created_at      timestamptz NOT NULL,
            deactivated_at  timestamptz NULL,
            position        bigint NOT NULL
        )
        """
    )
    op.execute(
        "CREATE INDEX rm_smtp_credentials_account_newest"
        " ON rm_smtp_credentials (account_id, created_at DESC, credential_id DESC)"
    )
    op.execute(
        """
        CREATE TABLE rm_domains (
            domain_id           uuid PRIMARY KEY,
            account_id          uuid NOT NULL,
            name                text NOT NULL,
            status              text NOT NULL CHECK (status IN ('pending', 'verified')),
            status_reason       text NULL,
            verification_name   text NOT NULL,
            verification_value  text NOT NULL,
            created_at          timestamptz NOT NULL,
            verified_at         timestamptz NULL,
            position            bigint NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX rm_domains_account_newest ON rm_domains (account_id, created_at DESC)")

    # The auth cache's source of truth for rebuilds: one row per username, as in Redis.
    op.execute(
        """
        CREATE TABLE projector_auth_entries (
            username        text PRIMARY KEY,
            credential_id   uuid NOT NULL,
            account_id      uuid NOT NULL,
            domain_id       uuid NOT NULL,
            domain          text NOT NULL,
            secret_hash     text NOT NULL,
            hash_scheme     text NOT NULL,
            active          boolean NOT NULL,
            position        bigint NOT NULL
        )
        """
    )
    # Events that arrived before the event creating their stream's row (applied when it arrives).
    op.execute(
        """
        CREATE TABLE projector_parked_events (
            stream_id   uuid NOT NULL,
            position    bigint NOT NULL,
            envelope    jsonb NOT NULL,
            PRIMARY KEY (stream_id, position)
        )
        """
    )
    # Consumed offsets, written in the same transaction as the effects (exactly-once effect).
    op.execute(
        """
        CREATE TABLE projector_offsets (
            group_id     text NOT NULL,
            topic        text NOT NULL,
            partition    int NOT NULL,
            next_offset  bigint NOT NULL,
            updated_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (group_id, topic, partition)
        )
        """
    )
    # Every event whose effects are committed: a redelivery is recognised and counted, never re-applied.
    op.execute(
        """
        CREATE TABLE projector_processed_events (
            event_id  uuid PRIMARY KEY,
            position  bigint NOT NULL
        )
        """
    )


def downgrade() -> None:
    for table in (
        "projector_processed_events",
        "projector_offsets",
        "projector_parked_events",
        "projector_auth_entries",
        "rm_domains",
        "rm_smtp_credentials",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")

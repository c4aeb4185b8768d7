"""The event store and the command side's tables.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE event_store (
            position        bigint PRIMARY KEY CHECK (position > 0),
            event_id        uuid NOT NULL UNIQUE,
            event_type      text NOT NULL,
            schema_version  int NOT NULL,
            stream_id       uuid NOT NULL,
            stream_version  int NOT NULL CHECK (stream_version > 0),
            topic           text NOT NULL,
            partition_key   text NOT NULL,
            occurred_at     timestamptz NOT NULL,
            correlation_id  text NOT NULL,
            data            jsonb NOT NULL,
            UNIQUE (stream_id, stream_version)
        )
        """
    )
    # Append-only: the log of record is never rewritten.
    op.execute(
        """
        CREATE FUNCTION event_store_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'event_store is append-only';
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER event_store_no_update_delete BEFORE UPDATE OR DELETE ON event_store
        FOR EACH ROW EXECUTE FUNCTION event_store_append_only()
        """
    )
    op.execute(
        """
        CREATE TRIGGER event_store_no_truncate BEFORE TRUNCATE ON event_store
        FOR EACH STATEMENT EXECUTE FUNCTION event_store_append_only()
        """
    )
    op.execute(
        """
        CREATE TABLE accounts (
            account_id  uuid PRIMARY KEY,
            name        text NOT NULL,
            plan        text NOT NULL CHECK (plan IN ('free', 'starter', 'pro', 'enterprise')),
            created_at  timestamptz NOT NULL
        )
        """
    )
    op.execute(
        """
        CREATE TABLE api_keys (
            key_id      uuid PRIMARY KEY,
            account_id  uuid NOT NULL REFERENCES accounts (account_id),
            key_hash    text NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
            created_at  timestamptz NOT NULL,
            revoked_at  timestamptz NULL
        )
        """
    )
    op.execute(
        """
        CREATE TABLE domains (
            domain_id           uuid PRIMARY KEY,
            account_id          uuid NOT NULL REFERENCES accounts (account_id),
            name                text NOT NULL,
            status              text NOT NULL CHECK (status IN ('pending', 'verified')),
            status_reason       text NULL,
            verification_name   text NOT NULL,
            verification_value  text NOT NULL,
            created_at          timestamptz NOT NULL,
            verified_at         timestamptz NULL,
            UNIQUE (account_id, name)
        )
        """
    )
    # One account per verified name.
    op.execute("CREATE UNIQUE INDEX domains_one_verified_owner ON domains (name) WHERE status = 'verified'")
    op.execute(
        """
        CREATE TABLE credentials (
            credential_id   uuid PRIMARY KEY,
            account_id      uuid NOT NULL REFERENCES accounts (account_id),
            domain_id       uuid NOT NULL REFERENCES domains (domain_id),
            username        text NOT NULL,
            secret_hash     text NOT NULL CHECK (secret_hash ~ '^[0-9a-f]{64}$'),
            is_active       boolean NOT NULL,
            created_at      timestamptz NOT NULL,
            deactivated_at  timestamptz NULL
        )
        """
    )
    # One active credential per domain, whatever the application code does.
    op.execute("CREATE UNIQUE INDEX credentials_one_active_per_domain ON credentials (domain_id) WHERE is_active")
    op.execute("CREATE INDEX credentials_active_by_account ON credentials (account_id) WHERE is_active")
    op.execute(
        """
        CREATE TABLE publisher_progress (
            publisher       text PRIMARY KEY,
            last_position   bigint NOT NULL,
            updated_at      timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE publisher_progress")
    op.execute("DROP TABLE credentials")
    op.execute("DROP TABLE domains")
    op.execute("DROP TABLE api_keys")
    op.execute("DROP TABLE accounts")
    op.execute("DROP TABLE event_store")
    op.execute("DROP FUNCTION event_store_append_only()")

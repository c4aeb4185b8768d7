"""Webhook endpoints, their deliveries and attempts, and the dispatcher's consumer offsets (issue 17).

- `webhook_endpoints`: one row per endpoint of an account. The signing secret is stored AES-GCM encrypted
  (`taifa_api.adapters.webhook_secrets`: the ciphertext names its key id), never in clear and never hashed: the
  dispatcher must use it to sign. After a rotation the previous secret still signs until
  `previous_secret_expires_at`. DELETE removes the row and, by cascade, its deliveries and attempts.
- `webhook_deliveries`: one row per (endpoint, audit event), created by the dispatcher in the same transaction as
  its consumer offsets (`webhook_consumer_offsets`), so a record is turned into deliveries exactly once.
  `message_id` is the `webhook-id` header, the same on every retry. Due pending deliveries are found through
  partial indexes (by time, and per endpoint for the dispatcher's one-at-a-time-per-endpoint claim).
- `webhook_attempts`: every attempt of a delivery: status code, latency, a short error and a response excerpt
  (at most 200 characters; response bodies are not stored beyond that).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE webhook_endpoints (
            id                          uuid PRIMARY KEY,
            account_id                  uuid NOT NULL,
            url                         text NOT NULL CHECK (char_length(url) <= 2048),
            events                      text[] NOT NULL CHECK (cardinality(events) >= 1),
            status                      text NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
            secret_ciphertext           bytea NOT NULL,
            previous_secret_ciphertext  bytea NULL,
            previous_secret_expires_at  timestamptz NULL,
            created_at                  timestamptz NOT NULL,
            disabled_at                 timestamptz NULL,
            disabled_reason             text NULL CHECK (char_length(disabled_reason) <= 500)
        )
        """
    )
    op.execute("CREATE INDEX webhook_endpoints_of_account ON webhook_endpoints (account_id, created_at DESC, id DESC)")
    op.execute(
        """
        CREATE TABLE webhook_deliveries (
            id               uuid PRIMARY KEY,
            webhook_id       uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
            account_id       uuid NOT NULL,
            message_id       text NOT NULL,
            event_id         uuid NOT NULL,
            event_type       text NOT NULL,
            payload          jsonb NOT NULL,
            status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
            attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            next_attempt_at  timestamptz NULL,
            created_at       timestamptz NOT NULL,
            last_attempt_at  timestamptz NULL,
            UNIQUE (webhook_id, event_id)
        )
        """
    )
    op.execute("CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending'")
    op.execute(
        "CREATE INDEX webhook_deliveries_of_endpoint ON webhook_deliveries (webhook_id, created_at DESC, id DESC)"
    )
    # The dispatcher's claim: the endpoints with pending deliveries (a skip scan) and the oldest of each.
    op.execute(
        "CREATE INDEX webhook_deliveries_pending_of_endpoint ON webhook_deliveries (webhook_id, next_attempt_at, "
        "created_at) WHERE status = 'pending'"
    )
    op.execute(
        """
        CREATE TABLE webhook_attempts (
            delivery_id       uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
            attempt           integer NOT NULL CHECK (attempt >= 1),
            started_at        timestamptz NOT NULL,
            status_code       integer NULL,
            latency_ms        integer NOT NULL CHECK (latency_ms >= 0),
            error             text NULL CHECK (char_length(error) <= 500),
            response_excerpt  text NULL CHECK (char_length(response_excerpt) <= 200),
            PRIMARY KEY (delivery_id, attempt)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE webhook_consumer_offsets (
            topic        text NOT NULL,
            partition    integer NOT NULL,
            next_offset  bigint NOT NULL CHECK (next_offset >= 0),
            PRIMARY KEY (topic, partition)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE webhook_consumer_offsets")
    op.execute("DROP TABLE webhook_attempts")
    op.execute("DROP TABLE webhook_deliveries")
    op.execute("DROP TABLE webhook_endpoints")

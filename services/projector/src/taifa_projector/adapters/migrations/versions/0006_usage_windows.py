"""Usage windows (issue 16): `rm_usage_windows` and the last use of each secret.

- `rm_usage_windows`: one row per credential per UTC hour, the window's totals as the usage topic last reported
  them (applied with GREATEST per counter, per refusal reason in `refused` and per last-use time: a redelivered,
  replayed or older window changes nothing). Usage is not in the event store, so a rebuild from the event store
  keeps this table (it is never swapped) and restores the `last_used_*` columns from it.
- `projector_auth_entries.plan` (and the row type): the cache entry's `plan`, "free" until the account's is known;
  `projector_account_plans` (account id -> plan, from AccountCreated) and an index of the entries by account.
- `rm_credential_secrets.last_used_at`: when the secret last authenticated (from the windows' `secrets_last_used`).
  `rm_smtp_credentials.last_used_at` / `last_used_ip` exist since 0005 and are now filled from the windows.

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
        CREATE TABLE rm_usage_windows (
            credential_id     uuid NOT NULL,
            account_id        uuid NOT NULL,
            window_start      timestamptz NOT NULL,
            messages          bigint NOT NULL DEFAULT 0,
            recipients        bigint NOT NULL DEFAULT 0,
            bytes             bigint NOT NULL DEFAULT 0,
            auth_successes    bigint NOT NULL DEFAULT 0,
            auth_failures     bigint NOT NULL DEFAULT 0,
            refused           jsonb NOT NULL DEFAULT '{}',
            last_used_at      timestamptz NULL,
            last_used_ip      inet NULL,
            secrets_last_used jsonb NOT NULL DEFAULT '{}',
            reported_at       timestamptz NOT NULL,
            PRIMARY KEY (credential_id, window_start)
        )
        """
    )
    op.execute("CREATE INDEX rm_usage_windows_account ON rm_usage_windows (account_id, window_start)")
    op.execute("ALTER TABLE rm_credential_secrets ADD COLUMN last_used_at timestamptz NULL")
    # The cache entry's `plan` (the account's daily quota at the relay), mirrored like the entry's other fields.
    op.execute("ALTER TABLE projector_auth_entries ADD COLUMN plan text NOT NULL DEFAULT 'free'")
    op.execute("ALTER TYPE projector_auth_row ADD ATTRIBUTE plan text")
    # Each account's plan (AccountCreated; plans never change), and the entries of an account found by its id
    # (an AccountCreated consumed after the account's credentials gives them the plan).
    op.execute("CREATE TABLE projector_account_plans (account_id uuid PRIMARY KEY, plan text NOT NULL)")
    op.execute("CREATE INDEX projector_auth_entries_account ON projector_auth_entries (account_id)")


def downgrade() -> None:
    op.execute("DROP INDEX projector_auth_entries_account")
    op.execute("DROP TABLE projector_account_plans")
    op.execute("ALTER TYPE projector_auth_row DROP ATTRIBUTE plan")
    op.execute("ALTER TABLE projector_auth_entries DROP COLUMN plan")
    op.execute("ALTER TABLE rm_credential_secrets DROP COLUMN last_used_at")
    op.execute("DROP TABLE rm_usage_windows")

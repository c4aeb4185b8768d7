"""The projector's read-side tables and their columns, shared by the live path (`postgres`) and the rebuild
(`postgres_rebuild`).

Rows go to asyncpg as they are: the row tuples' fields are the tables' columns in the same order (and those of
the row types of migration 0002). A credential row's last field (`secrets`) is not a column: its secrets are
rows of rm_credential_secrets.
"""

from __future__ import annotations

from typing import Any

from taifa_projector.adapters import audit_feed
from taifa_projector.domain.model import AuthEntry, CredentialRow, DomainRow, SecretRow

CREDENTIAL_COLUMNS = CredentialRow._fields[:-1]
SECRET_COLUMNS = SecretRow._fields
DOMAIN_COLUMNS = DomainRow._fields
AUTH_COLUMNS = AuthEntry._fields

READ_SIDE_TABLES = (
    "rm_smtp_credentials",
    "rm_credential_secrets",
    "rm_domains",
    "projector_auth_entries",
    "projector_account_plans",
    "projector_parked_events",
    "projector_processed_events",
    audit_feed.TABLE,  # the audit feed (issue 17): its quota notices are carried over (`audit_feed.fill_shadow`)
)

# Tables a rebuild keeps (their content is not in the event store): usage windows.
KEPT_TABLES = ("rm_usage_windows",)


def credential_record(row: CredentialRow) -> tuple[Any, ...]:
    """The columns of a credential row (without its secrets)."""
    return tuple(row[:-1])

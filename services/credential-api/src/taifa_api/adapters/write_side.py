# ruff: noqa: S608 - SQL is built only from constant column lists; values are always bind parameters.
"""SQL of the command side's own tables (accounts, api_keys, domains, credentials).

Every function runs on the connection it is given, so the unit of work (adapters/unit_of_work.py) can lock
rows, check invariants and append events in one transaction. Changes are stored as whole records, the ones
the domain functions return together with their events.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from taifa_api.domain.models import AccountRecord, ApiKeyRecord, CredentialRecord, DomainRecord, SecretRecord

_DOMAIN_COLUMNS = (
    "domain_id, account_id, name, status, status_reason, verification_name, verification_value, created_at, verified_at"
)
_DOMAIN_STATE_COLUMNS = (
    "released_at, verification_checked_at, verification_missing_since, failure_recorded_at, verification_method"
)
_LIVE = "status <> 'released'"  # a released domain no longer exists for its account
_CREDENTIAL_COLUMNS = "credential_id, account_id, domain_id, username, is_active, created_at, deactivated_at"
_CREDENTIAL_STATE_COLUMNS = (
    "status, suspended_at, suspension_reason, expires_at, allowed_cidrs, "
    "limit_messages_per_minute AS messages_per_minute, limit_messages_per_day AS messages_per_day"
)
_SECRET_COLUMNS = "secret_id, credential_id, created_at, expires_at, revoked_at"  # noqa: S105 - column names


# --- accounts and API keys -------------------------------------------------------------------------------


async def insert_account(conn: asyncpg.Connection, account: AccountRecord) -> None:
    await conn.execute(
        "INSERT INTO accounts (account_id, name, plan, created_at) VALUES ($1, $2, $3, $4)",
        account.account_id,
        account.name,
        account.plan,
        account.created_at,
    )


async def lock_account_plan(conn: asyncpg.Connection, account_id: UUID) -> str | None:
    """Lock the account row (serialises credential creation per account) and return its plan."""
    plan = await conn.fetchval("SELECT plan FROM accounts WHERE account_id = $1 FOR NO KEY UPDATE", account_id)
    return str(plan) if plan is not None else None


async def account_plan(conn: asyncpg.Connection, account_id: UUID) -> str | None:
    """The account's plan, without a lock."""
    plan = await conn.fetchval("SELECT plan FROM accounts WHERE account_id = $1", account_id)
    return str(plan) if plan is not None else None


async def account_exists(conn: asyncpg.Connection | asyncpg.Pool, account_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM accounts WHERE account_id = $1)", account_id))


async def insert_api_key(conn: asyncpg.Connection, key: ApiKeyRecord) -> None:
    await conn.execute(
        "INSERT INTO api_keys (key_id, account_id, key_hash, created_at) VALUES ($1, $2, $3, $4)",
        key.key_id,
        key.account_id,
        key.key_hash,
        key.created_at,
    )


async def find_api_key_by_hash(conn: asyncpg.Connection | asyncpg.Pool, key_hash: str) -> ApiKeyRecord | None:
    row = await conn.fetchrow(
        "SELECT key_id, account_id, key_hash, revoked_at FROM api_keys WHERE key_hash = $1", key_hash
    )
    return ApiKeyRecord(**dict(row)) if row else None


async def lock_api_key(conn: asyncpg.Connection, key_id: UUID) -> ApiKeyRecord | None:
    row = await conn.fetchrow(
        "SELECT key_id, account_id, key_hash, revoked_at FROM api_keys WHERE key_id = $1 FOR NO KEY UPDATE", key_id
    )
    return ApiKeyRecord(**dict(row)) if row else None


async def update_api_key(conn: asyncpg.Connection, key: ApiKeyRecord) -> None:
    """Store the key's revocation (a revoked key is never un-revoked)."""
    await conn.execute(
        "UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL", key.key_id, key.revoked_at
    )


# --- domains ---------------------------------------------------------------------------------------------


async def insert_domain(conn: asyncpg.Connection, domain: DomainRecord) -> bool:
    """Insert a domain; False when this account already has the name (nothing inserted)."""
    status = await conn.execute(
        f"INSERT INTO domains ({_DOMAIN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
        f"ON CONFLICT (account_id, name) WHERE {_LIVE} DO NOTHING",
        domain.domain_id,
        domain.account_id,
        domain.name,
        domain.status,
        domain.status_reason,
        domain.verification_name,
        domain.verification_value,
        domain.created_at,
        domain.verified_at,
    )
    return bool(status.endswith(" 1"))


async def find_domain(
    conn: asyncpg.Connection | asyncpg.Pool,
    domain_id: UUID,
    account_id: UUID | None,
    *,
    for_update: bool = False,
    include_released: bool = False,
) -> DomainRecord | None:
    """The domain if it exists, is not released (unless asked) and (when `account_id` is given) is that account's."""
    sql = (
        f"SELECT {_DOMAIN_COLUMNS}, {_DOMAIN_STATE_COLUMNS} FROM domains "
        "WHERE domain_id = $1 AND ($2::uuid IS NULL OR account_id = $2)"
    )
    if not include_released:
        sql += f" AND {_LIVE}"
    row = await conn.fetchrow(sql + (" FOR NO KEY UPDATE" if for_update else ""), domain_id, account_id)
    return DomainRecord(**dict(row)) if row else None


async def find_domain_by_name(conn: asyncpg.Connection, account_id: UUID, name: str) -> DomainRecord | None:
    row = await conn.fetchrow(
        f"SELECT {_DOMAIN_COLUMNS}, {_DOMAIN_STATE_COLUMNS} FROM domains "
        f"WHERE account_id = $1 AND name = $2 AND {_LIVE}",
        account_id,
        name,
    )
    return DomainRecord(**dict(row)) if row else None


async def count_live_domains(conn: asyncpg.Connection, account_id: UUID) -> int:
    """Domains the account holds (pending or verified); call it under the account row lock."""
    return int(await conn.fetchval(f"SELECT count(*) FROM domains WHERE account_id = $1 AND {_LIVE}", account_id))


async def name_verified_by_another_account(conn: asyncpg.Connection, name: str, account_id: UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM domains WHERE name = $1 AND status = 'verified' AND account_id <> $2)",
            name,
            account_id,
        )
    )


async def update_domain(conn: asyncpg.Connection, domain: DomainRecord) -> None:
    """Store the domain's changing state (the caller holds its row lock). Raises asyncpg.UniqueViolationError
    when the domain is verified and another account holds the verified name."""
    await conn.execute(
        "UPDATE domains SET status = $2, status_reason = $3, verified_at = $4, released_at = $5, "
        "verification_checked_at = $6, verification_missing_since = $7, failure_recorded_at = $8, "
        "verification_method = $9 WHERE domain_id = $1",
        domain.domain_id,
        domain.status,
        domain.status_reason,
        domain.verified_at,
        domain.released_at,
        domain.verification_checked_at,
        domain.verification_missing_since,
        domain.failure_recorded_at,
        domain.verification_method,
    )


async def domains_due_for_recheck(
    conn: asyncpg.Connection | asyncpg.Pool,
    checked_before: datetime,
    limit: int,
) -> list[DomainRecord]:
    """Verified domains last checked before `checked_before` (never checked first), oldest first; not those an
    operator verified without DNS (their TXT record was never needed)."""
    rows = await conn.fetch(
        f"SELECT {_DOMAIN_COLUMNS}, {_DOMAIN_STATE_COLUMNS} FROM domains WHERE status = 'verified' "
        "AND verification_method IS DISTINCT FROM 'operator' "
        "AND (verification_checked_at IS NULL OR verification_checked_at < $1) "
        "ORDER BY verification_checked_at NULLS FIRST, domain_id LIMIT $2",
        checked_before,
        limit,
    )
    return [DomainRecord(**dict(row)) for row in rows]


# --- credentials -----------------------------------------------------------------------------------------


async def domain_has_active_credential(conn: asyncpg.Connection, domain_id: UUID) -> bool:
    return bool(
        await conn.fetchval("SELECT EXISTS (SELECT 1 FROM credentials WHERE domain_id = $1 AND is_active)", domain_id)
    )


async def count_active_credentials(conn: asyncpg.Connection, account_id: UUID) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM credentials WHERE account_id = $1 AND is_active", account_id))


async def insert_credential(
    conn: asyncpg.Connection, credential: CredentialRecord, secret: SecretRecord, secret_hash: str
) -> None:
    """Insert the credential and its first secret. Raises asyncpg.UniqueViolationError if the domain already has
    an active credential. `credentials.secret_hash` keeps the first secret's hash (credential_secrets holds all)."""
    await conn.execute(
        f"INSERT INTO credentials ({_CREDENTIAL_COLUMNS}, secret_hash, status) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        credential.credential_id,
        credential.account_id,
        credential.domain_id,
        credential.username,
        credential.is_active,
        credential.created_at,
        credential.deactivated_at,
        secret_hash,
        credential.status,
    )
    await insert_secret(conn, secret, secret_hash)


def _credential(row: asyncpg.Record) -> CredentialRecord:
    data = dict(row)
    data["allowed_cidrs"] = tuple(data["allowed_cidrs"] or ())
    return CredentialRecord(**data)


async def lock_credential(
    conn: asyncpg.Connection, credential_id: UUID, account_id: UUID | None
) -> CredentialRecord | None:
    """The credential, row-locked, if it exists and belongs to `account_id` (any account when None)."""
    row = await conn.fetchrow(
        f"SELECT {_CREDENTIAL_COLUMNS}, {_CREDENTIAL_STATE_COLUMNS} FROM credentials "
        "WHERE credential_id = $1 AND ($2::uuid IS NULL OR account_id = $2) FOR NO KEY UPDATE",
        credential_id,
        account_id,
    )
    return _credential(row) if row else None


async def lock_active_credentials_of_domain(conn: asyncpg.Connection, domain_id: UUID) -> list[CredentialRecord]:
    rows = await conn.fetch(
        f"SELECT {_CREDENTIAL_COLUMNS}, {_CREDENTIAL_STATE_COLUMNS} FROM credentials "
        "WHERE domain_id = $1 AND is_active ORDER BY created_at, credential_id FOR NO KEY UPDATE",
        domain_id,
    )
    return [_credential(row) for row in rows]


async def update_credential(conn: asyncpg.Connection, credential: CredentialRecord) -> None:
    """Store the credential's state (the caller holds its row lock): status, suspension, restrictions and
    deactivation (a deactivated credential is never reactivated: the domain functions refuse it)."""
    await conn.execute(
        "UPDATE credentials SET is_active = $2, deactivated_at = $3, status = $4, suspended_at = $5, "
        "suspension_reason = $6, expires_at = $7, allowed_cidrs = $8, limit_messages_per_minute = $9, "
        "limit_messages_per_day = $10 WHERE credential_id = $1",
        credential.credential_id,
        credential.is_active,
        credential.deactivated_at,
        credential.status,
        credential.suspended_at,
        credential.suspension_reason,
        credential.expires_at,
        list(credential.allowed_cidrs),
        credential.messages_per_minute,
        credential.messages_per_day,
    )


async def credential_secrets(conn: asyncpg.Connection, credential_id: UUID) -> list[SecretRecord]:
    rows = await conn.fetch(
        f"SELECT {_SECRET_COLUMNS} FROM credential_secrets WHERE credential_id = $1 ORDER BY created_at DESC",
        credential_id,
    )
    return [SecretRecord(**dict(row)) for row in rows]


async def insert_secret(conn: asyncpg.Connection, secret: SecretRecord, secret_hash: str) -> None:
    await conn.execute(
        f"INSERT INTO credential_secrets ({_SECRET_COLUMNS}, secret_hash) VALUES ($1, $2, $3, $4, $5, $6)",
        secret.secret_id,
        secret.credential_id,
        secret.created_at,
        secret.expires_at,
        secret.revoked_at,
        secret_hash,
    )


async def update_secret(conn: asyncpg.Connection, secret: SecretRecord) -> None:
    """Store a secret's grace period end and revocation (its hash never changes)."""
    await conn.execute(
        "UPDATE credential_secrets SET expires_at = $2, revoked_at = $3 WHERE secret_id = $1",
        secret.secret_id,
        secret.expires_at,
        secret.revoked_at,
    )

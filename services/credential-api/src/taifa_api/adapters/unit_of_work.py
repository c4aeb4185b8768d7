"""The PostgreSQL unit of work: one pooled connection, one transaction, the write side's repositories and the
event store on it. The only place that turns asyncpg's unique violations into the application's errors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any
from uuid import UUID

import asyncpg
from asyncpg.transaction import Transaction
from taifa_events import Envelope, EventData

from taifa_api.adapters import event_store, sessions, write_side
from taifa_api.adapters.webhook_endpoints import PostgresWebhooks
from taifa_api.application.ports import AbstractUnitOfWork, NameAlreadyVerified, UnitOfWorkFactory
from taifa_api.domain import credentials as credential_rules
from taifa_api.domain.errors import CredentialExists
from taifa_api.domain.models import AccountRecord, ApiKeyRecord, CredentialRecord, DomainRecord, SecretRecord


class PostgresAccounts:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def add(self, account: AccountRecord) -> None:
        await write_side.insert_account(self._conn, account)

    async def lock_plan(self, account_id: UUID) -> str | None:
        return await write_side.lock_account_plan(self._conn, account_id)

    async def plan(self, account_id: UUID) -> str | None:
        return await write_side.account_plan(self._conn, account_id)


class PostgresApiKeys:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def add(self, key: ApiKeyRecord) -> None:
        await write_side.insert_api_key(self._conn, key)

    async def lock(self, key_id: UUID) -> ApiKeyRecord | None:
        return await write_side.lock_api_key(self._conn, key_id)

    async def save(self, key: ApiKeyRecord) -> None:
        await write_side.update_api_key(self._conn, key)


class PostgresDomains:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def add(self, domain: DomainRecord) -> bool:
        return await write_side.insert_domain(self._conn, domain)

    async def get(
        self, domain_id: UUID, account_id: UUID | None, *, lock: bool = False, include_released: bool = False
    ) -> DomainRecord | None:
        return await write_side.find_domain(
            self._conn, domain_id, account_id, for_update=lock, include_released=include_released
        )

    async def get_by_name(self, account_id: UUID, name: str) -> DomainRecord | None:
        return await write_side.find_domain_by_name(self._conn, account_id, name)

    async def count_live(self, account_id: UUID) -> int:
        return await write_side.count_live_domains(self._conn, account_id)

    async def name_verified_by_another_account(self, name: str, account_id: UUID) -> bool:
        return await write_side.name_verified_by_another_account(self._conn, name, account_id)

    async def save(self, domain: DomainRecord) -> None:
        if domain.status != credential_rules.VERIFIED:
            await write_side.update_domain(self._conn, domain)
            return
        # The one-verified-owner index is the last line of defence behind the use case's check; a savepoint
        # keeps the transaction usable so the use case can record the refusal instead.
        try:
            async with self._conn.transaction():
                await write_side.update_domain(self._conn, domain)
        except asyncpg.UniqueViolationError as exc:
            raise NameAlreadyVerified() from exc

    async def due_for_recheck(self, checked_before: datetime, limit: int) -> list[DomainRecord]:
        return await write_side.domains_due_for_recheck(self._conn, checked_before, limit)


class PostgresCredentials:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def add(self, credential: CredentialRecord, secret: SecretRecord, secret_hash: str) -> None:
        try:
            await write_side.insert_credential(self._conn, credential, secret, secret_hash)
        except asyncpg.UniqueViolationError as exc:
            # The partial unique index is the last line of defence behind the row locks.
            raise CredentialExists() from exc

    async def lock(self, credential_id: UUID, account_id: UUID | None) -> CredentialRecord | None:
        return await write_side.lock_credential(self._conn, credential_id, account_id)

    async def secrets(self, credential_id: UUID) -> list[SecretRecord]:
        return await write_side.credential_secrets(self._conn, credential_id)

    async def add_secret(self, secret: SecretRecord, secret_hash: str) -> None:
        await write_side.insert_secret(self._conn, secret, secret_hash)

    async def save_secret(self, secret: SecretRecord) -> None:
        await write_side.update_secret(self._conn, secret)

    async def lock_active_of_domain(self, domain_id: UUID) -> list[CredentialRecord]:
        return await write_side.lock_active_credentials_of_domain(self._conn, domain_id)

    async def domain_has_active(self, domain_id: UUID) -> bool:
        return await write_side.domain_has_active_credential(self._conn, domain_id)

    async def count_active(self, account_id: UUID) -> int:
        return await write_side.count_active_credentials(self._conn, account_id)

    async def save(self, credential: CredentialRecord) -> None:
        await write_side.update_credential(self._conn, credential)


class PostgresRevokedSessions:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def add(self, jti: str, expires_at: datetime | None, now: datetime) -> bool:
        return await sessions.insert_revocation(self._conn, jti, expires_at, now)

    async def delete_expired(self, expired_before: datetime) -> None:
        await sessions.delete_expired(self._conn, expired_before)


class PostgresUnitOfWork(AbstractUnitOfWork):
    """A connection from the pool for the length of one `async with`, in one transaction."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: asyncpg.Connection | None = None
        self._transaction: Transaction | None = None

    async def __aenter__(self) -> PostgresUnitOfWork:
        conn = await self._pool.acquire()
        try:
            transaction = conn.transaction()
            await transaction.start()
        except BaseException:
            await self._pool.release(conn)
            raise
        self._conn, self._transaction = conn, transaction
        self.accounts = PostgresAccounts(conn)
        self.api_keys = PostgresApiKeys(conn)
        self.domains = PostgresDomains(conn)
        self.credentials = PostgresCredentials(conn)
        self.revoked_sessions = PostgresRevokedSessions(conn)
        self.webhooks = PostgresWebhooks(conn)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            conn, self._conn, self._transaction = self._conn, None, None
            if conn is not None:
                await self._pool.release(conn)

    async def append(self, events: Sequence[EventData], *, correlation_id: str) -> list[Envelope[Any]]:
        if not events:
            return []
        return await event_store.append(self._active(), events, correlation_id=correlation_id, metadata=self.metadata)

    async def commit(self) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is None:
            raise RuntimeError("commit outside the unit of work, or twice")
        await transaction.commit()

    async def rollback(self) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is not None:
            await transaction.rollback()

    def _active(self) -> asyncpg.Connection:
        if self._conn is None or self._transaction is None:
            raise RuntimeError("the unit of work is not open")
        return self._conn


def unit_of_work_factory(pool: asyncpg.Pool) -> UnitOfWorkFactory:
    """What the use cases are given: a new PostgreSQL unit of work on `pool` for each `async with`."""
    return lambda: PostgresUnitOfWork(pool)

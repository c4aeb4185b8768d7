"""The PostgreSQL unit of work on a real database: commit and rollback, the pool connection given back, and
the unique constraints behind the row locks turned into the application's errors (the only place that knows
asyncpg's exceptions)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from taifa_api.adapters import database
from taifa_api.adapters.unit_of_work import unit_of_work_factory
from taifa_api.application.ports import NameAlreadyVerified, UnitOfWorkFactory
from taifa_api.domain import accounts, credentials, domains
from taifa_api.domain.errors import CredentialExists
from taifa_api.domain.models import AccountRecord, DomainRecord

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


@pytest.fixture
async def pool(api_db: str) -> AsyncIterator[asyncpg.Pool]:
    created = await database.create_pool(api_db, min_size=1, max_size=2)
    try:
        yield created
    finally:
        await created.close()


async def _verified(uow: UnitOfWorkFactory, name: str) -> tuple[AccountRecord, DomainRecord]:
    account, _ = accounts.open_account("uow", "pro", NOW)
    domain, _ = domains.register(account.account_id, name, NOW)
    verified, _ = domains.verify(domain, NOW, "operator")
    async with uow() as work:
        await work.accounts.add(account)
        assert await work.domains.add(domain)
        await work.domains.save(verified)
        await work.commit()
    return account, verified


async def test_leaving_without_commit_stores_nothing_and_gives_the_connection_back(pool: asyncpg.Pool) -> None:
    uow = unit_of_work_factory(pool)
    account, created = accounts.open_account("never", "free", NOW)
    async with uow() as work:
        await work.accounts.add(account)
        await work.append([created], correlation_id="t")
    async with uow() as work:
        assert await work.accounts.lock_plan(account.account_id) is None
    assert await pool.fetchval("SELECT count(*) FROM event_store WHERE stream_id = $1", account.account_id) == 0
    assert pool.get_idle_size() == pool.get_size()


async def test_a_second_active_credential_is_refused_by_the_index_as_credential_exists(pool: asyncpg.Pool) -> None:
    uow = unit_of_work_factory(pool)
    account, domain = await _verified(uow, "uow-cred.example")
    first, first_event = credentials.create(account.account_id, domain, NOW)
    second, second_event = credentials.create(account.account_id, domain, NOW)
    async with uow() as work:
        await work.credentials.add(first.record, first.secret, first_event.secret_hash)
        await work.commit()
    with pytest.raises(CredentialExists):
        async with uow() as work:
            await work.credentials.add(second.record, second.secret, second_event.secret_hash)
    count = await pool.fetchval("SELECT count(*) FROM credentials WHERE domain_id = $1", domain.domain_id)
    assert count == 1


async def test_a_name_verified_by_another_account_is_refused_and_the_unit_of_work_stays_usable(
    pool: asyncpg.Pool,
) -> None:
    uow = unit_of_work_factory(pool)
    await _verified(uow, "uow-taken.example")
    other, _ = accounts.open_account("other", "pro", NOW)
    domain, _ = domains.register(other.account_id, "uow-taken.example", NOW)
    async with uow() as work:
        await work.accounts.add(other)
        assert await work.domains.add(domain)
        verified, _ = domains.verify(domain, NOW, "dns")
        with pytest.raises(NameAlreadyVerified):
            await work.domains.save(verified)
        failed, _ = domains.fail_verification(domain, domains.REASON_TAKEN, NOW)
        await work.domains.save(failed)
        await work.commit()
    row = await pool.fetchrow("SELECT status, status_reason FROM domains WHERE domain_id = $1", domain.domain_id)
    assert (row["status"], row["status_reason"]) == ("pending", domains.REASON_TAKEN)

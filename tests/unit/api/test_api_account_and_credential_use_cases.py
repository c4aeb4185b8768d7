"""The account, API key, SMTP credential and session use cases on an in-memory unit of work (fakes of our own
ports only): what each decides, what it stores with the events it appends in the same commit, and what a refusal
leaves behind (nothing). PostgreSQL's locks and constraints are driven by tests/integration/api."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from api_in_memory import LIMITS, Clock, InMemoryDatabase, open_account, verified_domain
from taifa_api.application import sessions, use_cases
from taifa_api.domain.errors import CredentialExists, CredentialLimitReached, DomainNotVerified, NotFound
from taifa_events import hash_secret

# --- accounts and API keys -----------------------------------------------------------------------------------


async def test_creating_an_account_stores_it_with_a_first_key_and_appends_both_events(
    database: InMemoryDatabase, clock: Clock
) -> None:
    outcome = await use_cases.create_account(database, "acme", "pro", "corr-1", clock=clock)
    issued = outcome.value
    account = database.tables.accounts[issued.account_id]
    key = database.tables.api_keys[issued.key_id]
    assert (account.name, account.plan, account.created_at) == ("acme", "pro", clock.now)
    assert key.key_hash == hash_secret(issued.api_key) and key.revoked_at is None
    assert [e.event_type for e in outcome.events] == ["AccountCreated", "ApiKeyIssued"]
    assert database.tables.events == outcome.events
    assert all(e.correlation_id == "corr-1" for e in outcome.events)
    assert issued.api_key not in repr(outcome.events)


async def test_issuing_a_key_for_an_unknown_account_is_not_found_and_stores_nothing(
    database: InMemoryDatabase,
) -> None:
    with pytest.raises(NotFound):
        await use_cases.issue_api_key(database, uuid.uuid4(), "t")
    assert database.tables.api_keys == {} and database.tables.events == []


async def test_issuing_another_key_keeps_the_first_one(database: InMemoryDatabase) -> None:
    account_id = await open_account(database)
    outcome = await use_cases.issue_api_key(database, account_id, "t")
    assert len(database.tables.api_keys) == 2
    assert [e.event_type for e in outcome.events] == ["ApiKeyIssued"]
    assert outcome.events[0].data.key_id == outcome.value.key_id


async def test_revoking_a_key_twice_appends_one_event(database: InMemoryDatabase, clock: Clock) -> None:
    issued = (await use_cases.create_account(database, "acme", "pro", "t")).value
    first = await use_cases.revoke_api_key(database, issued.key_id, "t", clock=clock)
    second = await use_cases.revoke_api_key(database, issued.key_id, "t", clock=clock)
    assert first.value == second.value == issued.account_id
    assert [e.event_type for e in first.events] == ["ApiKeyRevoked"] and second.events == []
    assert database.tables.api_keys[issued.key_id].revoked_at == clock.now


async def test_revoking_an_unknown_key_is_not_found(database: InMemoryDatabase) -> None:
    with pytest.raises(NotFound):
        await use_cases.revoke_api_key(database, uuid.uuid4(), "t")


# --- SMTP credentials ----------------------------------------------------------------------------------------


async def test_creating_a_credential_stores_the_hash_its_event_carries_and_shows_the_password_once(
    database: InMemoryDatabase, clock: Clock
) -> None:
    account_id = await open_account(database)
    domain_id = await verified_domain(database, account_id)
    outcome = await use_cases.create_credential(database, account_id, domain_id, LIMITS, "t", clock=clock)
    created = outcome.value
    (event,) = outcome.events
    stored_hash = database.tables.secret_hashes[created.record.credential_id]
    assert stored_hash == event.data.secret_hash == hash_secret(created.password)
    assert created.record.username == f"{str(account_id)[:8]}@mail.example"
    assert database.tables.credentials[created.record.credential_id] == created.record
    assert created.password not in repr(created) and created.password not in repr(outcome.events)


async def test_a_second_active_credential_for_a_domain_is_refused(database: InMemoryDatabase) -> None:
    account_id = await open_account(database)
    domain_id = await verified_domain(database, account_id)
    await use_cases.create_credential(database, account_id, domain_id, LIMITS, "t")
    with pytest.raises(CredentialExists):
        await use_cases.create_credential(database, account_id, domain_id, LIMITS, "t")
    assert len(database.tables.credentials) == 1


async def test_the_plan_limit_and_an_unverified_domain_refuse_a_credential(database: InMemoryDatabase) -> None:
    account_id = await open_account(database, plan="free")
    first = await verified_domain(database, account_id, "one.example")
    second = await verified_domain(database, account_id, "two.example")
    pending = (await use_cases.register_domain(database, account_id, "three.example", "t")).value
    await use_cases.create_credential(database, account_id, first, LIMITS, "t")
    with pytest.raises(CredentialLimitReached):
        await use_cases.create_credential(database, account_id, second, LIMITS, "t")
    with pytest.raises(DomainNotVerified):
        await use_cases.create_credential(database, account_id, pending.domain_id, LIMITS, "t")
    with pytest.raises(NotFound):
        await use_cases.create_credential(database, await open_account(database), first, LIMITS, "t")
    assert len(database.tables.credentials) == 1


async def test_a_refusal_by_the_store_rolls_the_whole_unit_of_work_back(
    database: InMemoryDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the checks, the store's unique constraint refuses: no credential and no event are left behind."""
    account_id = await open_account(database)
    domain_id = await verified_domain(database, account_id)
    events_before = list(database.tables.events)

    async def no_active_credential(self: object, domain_id: uuid.UUID) -> bool:
        return False

    import api_in_memory

    await use_cases.create_credential(database, account_id, domain_id, LIMITS, "t")
    monkeypatch.setattr(api_in_memory.InMemoryCredentials, "domain_has_active", no_active_credential)
    with pytest.raises(CredentialExists):
        await use_cases.create_credential(database, account_id, domain_id, LIMITS, "t")
    assert len(database.tables.credentials) == 1
    assert len(database.tables.events) == len(events_before) + 1


async def test_deactivating_a_credential_twice_appends_one_event(database: InMemoryDatabase, clock: Clock) -> None:
    account_id = await open_account(database)
    domain_id = await verified_domain(database, account_id)
    created = (await use_cases.create_credential(database, account_id, domain_id, LIMITS, "t")).value
    credential_id = created.record.credential_id
    first = await use_cases.deactivate_credential(database, account_id, credential_id, "t", clock=clock)
    second = await use_cases.deactivate_credential(database, account_id, credential_id, "t", clock=clock)
    assert [e.event_type for e in first.events] == ["CredentialDeactivated"] and second.events == []
    assert first.events[0].data.username == created.record.username
    assert database.tables.credentials[credential_id].deactivated_at == clock.now
    with pytest.raises(NotFound):
        await use_cases.deactivate_credential(database, await open_account(database), credential_id, "t")


# --- session JWTs --------------------------------------------------------------------------------------------


async def test_revoking_a_session_is_new_once_and_keeps_the_later_expiry(
    database: InMemoryDatabase, clock: Clock
) -> None:
    soon, later = clock.now + timedelta(hours=1), clock.now + timedelta(hours=2)
    assert await sessions.revoke_session(database, "jti-1", later, 30, clock=clock) is True
    assert await sessions.revoke_session(database, "jti-1", soon, 30, clock=clock) is False
    assert database.tables.revoked_sessions["jti-1"] == later
    assert await sessions.revoke_session(database, "jti-1", None, 30, clock=clock) is False
    assert database.tables.revoked_sessions["jti-1"] is None  # without an expiry it is kept for good


async def test_revocations_of_long_expired_tokens_are_deleted(database: InMemoryDatabase, clock: Clock) -> None:
    await sessions.revoke_session(database, "old", clock.now + timedelta(minutes=1), 30, clock=clock)
    clock.advance(timedelta(minutes=1, seconds=91))  # past the leeway and the minute of margin
    await sessions.revoke_session(database, "new", None, 30, clock=clock)
    assert set(database.tables.revoked_sessions) == {"new"}


async def test_a_naive_expiry_is_taken_as_utc(database: InMemoryDatabase, clock: Clock) -> None:
    naive = datetime(2026, 11, 28, 5, 0)
    await sessions.revoke_session(database, "naive", naive, 30, clock=clock)
    assert database.tables.revoked_sessions["naive"] == naive.replace(tzinfo=UTC)


@pytest.mark.parametrize("jti", ["", "x" * 256, "bad\njti"])
async def test_a_jti_no_token_could_carry_is_refused(database: InMemoryDatabase, jti: str) -> None:
    with pytest.raises(sessions.InvalidJti):
        await sessions.revoke_session(database, jti, None, 30)
    assert database.tables.revoked_sessions == {}

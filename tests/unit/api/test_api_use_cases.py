"""Every use case of the credential API on an in-memory unit of work (fakes of our own ports only): what each
decides, what it stores and the events it appends in the same commit, and what a refusal leaves behind
(nothing). PostgreSQL's locks and constraints are driven by tests/integration/api."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from api_in_memory import Clock, InMemoryDatabase, Zone
from taifa_api.application import recheck, sessions, use_cases
from taifa_api.domain.errors import (
    CredentialExists,
    CredentialLimitReached,
    DomainAlreadyReleased,
    DomainLimitReached,
    DomainNotVerified,
    DomainTaken,
    InvalidDomainName,
    NotFound,
)
from taifa_events import hash_secret

LIMITS = {"free": 1, "pro": 25}


async def _account(database: InMemoryDatabase, plan: str = "pro") -> uuid.UUID:
    return (await use_cases.create_account(database, "acme", plan, "t")).value.account_id


async def _verified_domain(
    database: InMemoryDatabase, account_id: uuid.UUID, name: str = "mail.example", *, clock: Clock | None = None
) -> uuid.UUID:
    at = clock or Clock(datetime.now(UTC))
    domain = (await use_cases.register_domain(database, account_id, name, "t", clock=at)).value
    await use_cases.force_verify_domain(database, domain.domain_id, "t", clock=at)
    return domain.domain_id


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
    account_id = await _account(database)
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


# --- domains: register ---------------------------------------------------------------------------------------


async def test_registering_a_domain_stores_it_pending_with_the_record_its_event_announces(
    database: InMemoryDatabase,
) -> None:
    account_id = await _account(database)
    outcome = await use_cases.register_domain(database, account_id, "Bücher.Example.", "t")
    domain = outcome.value
    assert domain.name == "xn--bcher-kva.example" and domain.status == "pending"
    assert database.tables.domains[domain.domain_id] == domain
    (event,) = outcome.events
    assert event.event_type == "DomainRegistered"
    assert (event.data.verification_name, event.data.verification_value) == (
        domain.verification_name,
        domain.verification_value,
    )


async def test_registering_a_name_the_account_has_returns_that_domain_without_an_event(
    database: InMemoryDatabase,
) -> None:
    account_id = await _account(database)
    first = await use_cases.register_domain(database, account_id, "mail.example", "t")
    again = await use_cases.register_domain(database, account_id, "MAIL.example", "t")
    assert again.value == first.value and again.events == []
    assert len(database.tables.domains) == 1


async def test_registering_past_the_domain_cap_is_refused(database: InMemoryDatabase) -> None:
    account_id = await _account(database)
    await use_cases.register_domain(database, account_id, "one.example", "t", max_domains=1)
    with pytest.raises(DomainLimitReached):
        await use_cases.register_domain(database, account_id, "two.example", "t", max_domains=1)
    assert len(database.tables.domains) == 1


async def test_registering_for_an_unknown_account_or_an_invalid_name_is_refused(database: InMemoryDatabase) -> None:
    with pytest.raises(NotFound):
        await use_cases.register_domain(database, uuid.uuid4(), "mail.example", "t")
    with pytest.raises(InvalidDomainName):
        await use_cases.register_domain(database, await _account(database), "not a domain", "t")
    assert database.tables.domains == {}


# --- domains: verify -----------------------------------------------------------------------------------------


async def test_a_published_record_verifies_the_domain(database: InMemoryDatabase, zone: Zone, clock: Clock) -> None:
    account_id = await _account(database)
    domain = (await use_cases.register_domain(database, account_id, "mail.example", "t")).value
    zone.txt[domain.verification_name] = ["other", f"  {domain.verification_value} "]
    outcome = await use_cases.verify_domain(database, account_id, domain.domain_id, zone.lookup_txt, "t", clock=clock)
    assert outcome.value.status == "verified" and outcome.value.verified_at == clock.now
    assert database.tables.domains[domain.domain_id] == outcome.value
    (event,) = outcome.events
    assert (event.event_type, event.data.method, event.data.verified_at) == ("DomainVerified", "dns", clock.now)


async def test_verifying_a_verified_domain_looks_nothing_up(database: InMemoryDatabase, zone: Zone) -> None:
    account_id = await _account(database)
    domain_id = await _verified_domain(database, account_id)
    outcome = await use_cases.verify_domain(database, account_id, domain_id, zone.lookup_txt, "t")
    assert outcome.events == [] and zone.lookups == []


async def test_a_missing_record_is_a_failure_recorded_once_an_hour(
    database: InMemoryDatabase, zone: Zone, clock: Clock
) -> None:
    account_id = await _account(database)
    domain = (await use_cases.register_domain(database, account_id, "mail.example", "t")).value

    async def verify() -> use_cases.Outcome:
        return await use_cases.verify_domain(database, account_id, domain.domain_id, zone.lookup_txt, "t", clock=clock)

    first = await verify()
    assert first.value.status == "pending" and "no DNS record" in (first.value.status_reason or "")
    assert [e.event_type for e in first.events] == ["DomainVerificationFailed"]
    assert (await verify()).events == []  # same reason within the hour
    zone.txt[domain.verification_name] = ["taifa-verification=wrong"]
    changed = await verify()
    assert "does not hold" in (changed.value.status_reason or "") and len(changed.events) == 1
    clock.advance(timedelta(minutes=61))
    assert len((await verify()).events) == 1
    assert database.event_types().count("DomainVerificationFailed") == 3


async def test_a_name_verified_by_another_account_is_a_failure_for_the_owner_and_refused_to_the_operator(
    database: InMemoryDatabase, zone: Zone
) -> None:
    await _verified_domain(database, await _account(database), "shared.example")
    other = await _account(database)
    domain = (await use_cases.register_domain(database, other, "shared.example", "t")).value
    zone.txt[domain.verification_name] = [domain.verification_value]
    outcome = await use_cases.verify_domain(database, other, domain.domain_id, zone.lookup_txt, "t")
    assert outcome.value.status == "pending" and outcome.value.status_reason == use_cases.REASON_TAKEN
    with pytest.raises(DomainTaken):
        await use_cases.force_verify_domain(database, domain.domain_id, "t")
    assert database.tables.domains[domain.domain_id].status == "pending"


async def test_the_unique_verified_name_behind_the_check_becomes_a_failure_not_an_error(
    database: InMemoryDatabase, zone: Zone, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the check cannot see (another account verified in between): the store's refusal is recorded."""
    await _verified_domain(database, await _account(database), "raced.example")
    other = await _account(database)
    domain = (await use_cases.register_domain(database, other, "raced.example", "t")).value
    zone.txt[domain.verification_name] = [domain.verification_value]

    async def not_yet_visible(self: object, name: str, account_id: uuid.UUID) -> bool:
        return False

    import api_in_memory

    monkeypatch.setattr(api_in_memory.InMemoryDomains, "name_verified_by_another_account", not_yet_visible)
    outcome = await use_cases.verify_domain(database, other, domain.domain_id, zone.lookup_txt, "t")
    assert outcome.value.status_reason == use_cases.REASON_TAKEN
    assert [e.event_type for e in outcome.events] == ["DomainVerificationFailed"]


async def test_verifying_another_accounts_domain_is_not_found(database: InMemoryDatabase, zone: Zone) -> None:
    domain_id = await _verified_domain(database, await _account(database))
    with pytest.raises(NotFound):
        await use_cases.verify_domain(database, await _account(database), domain_id, zone.lookup_txt, "t")


async def test_the_operator_cannot_verify_a_released_domain(database: InMemoryDatabase) -> None:
    account_id = await _account(database)
    domain = (await use_cases.register_domain(database, account_id, "gone.example", "t")).value
    await use_cases.release_domain(database, domain.domain_id, account_id, "owner", "t")
    with pytest.raises(DomainAlreadyReleased):
        await use_cases.force_verify_domain(database, domain.domain_id, "t")
    with pytest.raises(NotFound):
        await use_cases.force_verify_domain(database, uuid.uuid4(), "t")


# --- domains: release ----------------------------------------------------------------------------------------


async def test_releasing_a_domain_deactivates_its_credential_first_then_frees_the_name(
    database: InMemoryDatabase, clock: Clock
) -> None:
    account_id = await _account(database)
    domain_id = await _verified_domain(database, account_id)
    created = (await use_cases.create_credential(database, account_id, domain_id, LIMITS, "t")).value
    outcome = await use_cases.release_domain(database, domain_id, account_id, "owner", "t", clock=clock)
    assert [e.event_type for e in outcome.events] == ["CredentialDeactivated", "DomainReleased"]
    assert outcome.events[1].data.reason == "owner"
    credential = database.tables.credentials[created.record.credential_id]
    assert not credential.is_active and credential.deactivated_at == clock.now
    assert database.tables.domains[domain_id].status == "released"
    other = await _account(database)
    assert (await _verified_domain(database, other)) != domain_id  # the name is free for another account


async def test_releasing_twice_or_someone_elses_domain_is_not_found(database: InMemoryDatabase) -> None:
    account_id = await _account(database)
    domain_id = await _verified_domain(database, account_id)
    with pytest.raises(NotFound):
        await use_cases.release_domain(database, domain_id, await _account(database), "owner", "t")
    await use_cases.release_domain(database, domain_id, None, "operator", "t")
    with pytest.raises(NotFound):
        await use_cases.release_domain(database, domain_id, account_id, "owner", "t")
    assert database.event_types().count("DomainReleased") == 1


# --- domains: re-check ---------------------------------------------------------------------------------------


async def test_recheck_starts_the_clock_then_releases_after_the_grace_period(
    database: InMemoryDatabase, zone: Zone, clock: Clock
) -> None:
    account_id = await _account(database)
    domain_id = await _verified_domain(database, account_id, clock=clock)
    await use_cases.create_credential(database, account_id, domain_id, LIMITS, "t")

    async def run() -> recheck.RecheckReport:
        return await recheck.recheck_domains(
            database, zone.lookup_txt, interval=timedelta(0), grace=timedelta(hours=72), clock=clock
        )

    clock.advance(timedelta(minutes=1))
    started = await run()
    assert (started.checked, started.missing, started.released) == (1, 1, [])
    assert database.tables.domains[domain_id].verification_missing_since == clock.now
    clock.advance(timedelta(hours=72))
    released = await run()
    assert released.released == [domain_id]
    assert [e.event_type for e in released.events] == ["CredentialDeactivated", "DomainReleased"]
    assert released.events[1].data.reason == "verification_lost"
    assert database.tables.domains[domain_id].status == "released"
    assert (await run()).checked == 0  # released domains are not checked again


async def test_recheck_confirms_a_published_record_and_clears_the_clock(
    database: InMemoryDatabase, zone: Zone, clock: Clock
) -> None:
    domain_id = await _verified_domain(database, await _account(database), clock=clock)
    domain = database.tables.domains[domain_id]
    grace = timedelta(hours=72)
    clock.advance(timedelta(minutes=1))
    await recheck.recheck_domains(database, zone.lookup_txt, interval=timedelta(0), grace=grace, clock=clock)
    zone.txt[domain.verification_name] = [domain.verification_value]
    clock.advance(timedelta(hours=1))
    report = await recheck.recheck_domains(
        database, zone.lookup_txt, interval=timedelta(0), grace=timedelta(hours=72), clock=clock
    )
    assert (report.checked, report.confirmed, report.events) == (1, 1, [])
    checked = database.tables.domains[domain_id]
    assert checked.verification_missing_since is None and checked.verification_checked_at == clock.now


async def test_recheck_skips_domains_checked_within_the_interval(
    database: InMemoryDatabase, zone: Zone, clock: Clock
) -> None:
    await _verified_domain(database, await _account(database), clock=clock)
    day = timedelta(days=1)
    report = await recheck.recheck_domains(database, zone.lookup_txt, interval=day, grace=day, clock=clock)
    assert report.checked == 0 and zone.lookups == []  # verified just now: checked at verification


# --- SMTP credentials ----------------------------------------------------------------------------------------


async def test_creating_a_credential_stores_the_hash_its_event_carries_and_shows_the_password_once(
    database: InMemoryDatabase, clock: Clock
) -> None:
    account_id = await _account(database)
    domain_id = await _verified_domain(database, account_id)
    outcome = await use_cases.create_credential(database, account_id, domain_id, LIMITS, "t", clock=clock)
    created = outcome.value
    (event,) = outcome.events
    stored_hash = database.tables.secret_hashes[created.record.credential_id]
    assert stored_hash == event.data.secret_hash == hash_secret(created.password)
    assert created.record.username == f"{str(account_id)[:8]}@mail.example"
    assert database.tables.credentials[created.record.credential_id] == created.record
    assert created.password not in repr(created) and created.password not in repr(outcome.events)


async def test_a_second_active_credential_for_a_domain_is_refused(database: InMemoryDatabase) -> None:
    account_id = await _account(database)
    domain_id = await _verified_domain(database, account_id)
    await use_cases.create_credential(database, account_id, domain_id, LIMITS, "t")
    with pytest.raises(CredentialExists):
        await use_cases.create_credential(database, account_id, domain_id, LIMITS, "t")
    assert len(database.tables.credentials) == 1


async def test_the_plan_limit_and_an_unverified_domain_refuse_a_credential(database: InMemoryDatabase) -> None:
    account_id = await _account(database, plan="free")
    first = await _verified_domain(database, account_id, "one.example")
    second = await _verified_domain(database, account_id, "two.example")
    pending = (await use_cases.register_domain(database, account_id, "three.example", "t")).value
    await use_cases.create_credential(database, account_id, first, LIMITS, "t")
    with pytest.raises(CredentialLimitReached):
        await use_cases.create_credential(database, account_id, second, LIMITS, "t")
    with pytest.raises(DomainNotVerified):
        await use_cases.create_credential(database, account_id, pending.domain_id, LIMITS, "t")
    with pytest.raises(NotFound):
        await use_cases.create_credential(database, await _account(database), first, LIMITS, "t")
    assert len(database.tables.credentials) == 1


async def test_a_refusal_by_the_store_rolls_the_whole_unit_of_work_back(
    database: InMemoryDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the checks, the store's unique constraint refuses: no credential and no event are left behind."""
    account_id = await _account(database)
    domain_id = await _verified_domain(database, account_id)
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
    account_id = await _account(database)
    domain_id = await _verified_domain(database, account_id)
    created = (await use_cases.create_credential(database, account_id, domain_id, LIMITS, "t")).value
    credential_id = created.record.credential_id
    first = await use_cases.deactivate_credential(database, account_id, credential_id, "t", clock=clock)
    second = await use_cases.deactivate_credential(database, account_id, credential_id, "t", clock=clock)
    assert [e.event_type for e in first.events] == ["CredentialDeactivated"] and second.events == []
    assert first.events[0].data.username == created.record.username
    assert database.tables.credentials[credential_id].deactivated_at == clock.now
    with pytest.raises(NotFound):
        await use_cases.deactivate_credential(database, await _account(database), credential_id, "t")


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

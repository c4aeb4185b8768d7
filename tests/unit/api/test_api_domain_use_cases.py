"""The domain use cases (register, verify, release, re-check) on an in-memory unit of work (fakes of our own
ports only): what each decides, what it stores with the events it appends in the same commit, and what a refusal
leaves behind (nothing). PostgreSQL's locks and constraints are driven by tests/integration/api."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from api_in_memory import LIMITS, Clock, InMemoryDatabase, Zone, dns_verified_domain, open_account, verified_domain
from taifa_api.application import recheck, use_cases
from taifa_api.domain.errors import DomainAlreadyReleased, DomainLimitReached, DomainTaken, InvalidDomainName, NotFound

# --- domains: register ---------------------------------------------------------------------------------------


async def test_registering_a_domain_stores_it_pending_with_the_record_its_event_announces(
    database: InMemoryDatabase,
) -> None:
    account_id = await open_account(database)
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
    account_id = await open_account(database)
    first = await use_cases.register_domain(database, account_id, "mail.example", "t")
    again = await use_cases.register_domain(database, account_id, "MAIL.example", "t")
    assert again.value == first.value and again.events == []
    assert len(database.tables.domains) == 1


async def test_registering_past_the_domain_cap_is_refused(database: InMemoryDatabase) -> None:
    account_id = await open_account(database)
    await use_cases.register_domain(database, account_id, "one.example", "t", max_domains=1)
    with pytest.raises(DomainLimitReached):
        await use_cases.register_domain(database, account_id, "two.example", "t", max_domains=1)
    assert len(database.tables.domains) == 1


async def test_registering_for_an_unknown_account_or_an_invalid_name_is_refused(database: InMemoryDatabase) -> None:
    with pytest.raises(NotFound):
        await use_cases.register_domain(database, uuid.uuid4(), "mail.example", "t")
    with pytest.raises(InvalidDomainName):
        await use_cases.register_domain(database, await open_account(database), "not a domain", "t")
    assert database.tables.domains == {}


# --- domains: verify -----------------------------------------------------------------------------------------


async def test_a_published_record_verifies_the_domain(database: InMemoryDatabase, zone: Zone, clock: Clock) -> None:
    account_id = await open_account(database)
    domain = (await use_cases.register_domain(database, account_id, "mail.example", "t")).value
    zone.txt[domain.verification_name] = ["other", f"  {domain.verification_value} "]
    outcome = await use_cases.verify_domain(database, account_id, domain.domain_id, zone.lookup_txt, "t", clock=clock)
    assert outcome.value.status == "verified" and outcome.value.verified_at == clock.now
    assert database.tables.domains[domain.domain_id] == outcome.value
    (event,) = outcome.events
    assert (event.event_type, event.data.method, event.data.verified_at) == ("DomainVerified", "dns", clock.now)


async def test_verifying_a_verified_domain_looks_nothing_up(database: InMemoryDatabase, zone: Zone) -> None:
    account_id = await open_account(database)
    domain_id = await verified_domain(database, account_id)
    outcome = await use_cases.verify_domain(database, account_id, domain_id, zone.lookup_txt, "t")
    assert outcome.events == [] and zone.lookups == []


async def test_a_missing_record_is_a_failure_recorded_once_an_hour(
    database: InMemoryDatabase, zone: Zone, clock: Clock
) -> None:
    account_id = await open_account(database)
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
    await verified_domain(database, await open_account(database), "shared.example")
    other = await open_account(database)
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
    await verified_domain(database, await open_account(database), "raced.example")
    other = await open_account(database)
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
    domain_id = await verified_domain(database, await open_account(database))
    with pytest.raises(NotFound):
        await use_cases.verify_domain(database, await open_account(database), domain_id, zone.lookup_txt, "t")


async def test_the_operator_cannot_verify_a_released_domain(database: InMemoryDatabase) -> None:
    account_id = await open_account(database)
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
    account_id = await open_account(database)
    domain_id = await verified_domain(database, account_id)
    created = (await use_cases.create_credential(database, account_id, domain_id, LIMITS, "t")).value
    outcome = await use_cases.release_domain(database, domain_id, account_id, "owner", "t", clock=clock)
    assert [e.event_type for e in outcome.events] == ["CredentialDeactivated", "DomainReleased"]
    assert outcome.events[1].data.reason == "owner"
    credential = database.tables.credentials[created.record.credential_id]
    assert not credential.is_active and credential.deactivated_at == clock.now
    assert database.tables.domains[domain_id].status == "released"
    other = await open_account(database)
    assert (await verified_domain(database, other)) != domain_id  # the name is free for another account


async def test_releasing_twice_or_someone_elses_domain_is_not_found(database: InMemoryDatabase) -> None:
    account_id = await open_account(database)
    domain_id = await verified_domain(database, account_id)
    with pytest.raises(NotFound):
        await use_cases.release_domain(database, domain_id, await open_account(database), "owner", "t")
    await use_cases.release_domain(database, domain_id, None, "operator", "t")
    with pytest.raises(NotFound):
        await use_cases.release_domain(database, domain_id, account_id, "owner", "t")
    assert database.event_types().count("DomainReleased") == 1


# --- domains: re-check ---------------------------------------------------------------------------------------


async def test_recheck_starts_the_clock_then_releases_after_the_grace_period(
    database: InMemoryDatabase, zone: Zone, clock: Clock
) -> None:
    account_id = await open_account(database)
    domain_id = await dns_verified_domain(database, zone, account_id, clock=clock)
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
    domain_id = await dns_verified_domain(database, zone, await open_account(database), clock=clock)
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


async def test_recheck_leaves_alone_a_domain_the_operator_verified_without_dns(
    database: InMemoryDatabase, zone: Zone, clock: Clock
) -> None:
    # `taifa-admin domain verify --force`: the TXT record was never needed; the re-check released such a domain
    # (and deactivated its credential) three days later.
    account_id = await open_account(database)
    domain_id = await verified_domain(database, account_id, clock=clock)
    credential = (await use_cases.create_credential(database, account_id, domain_id, LIMITS, "t")).value
    for _ in range(5):
        clock.advance(timedelta(days=1, minutes=1))
        report = await recheck.recheck_domains(
            database, zone.lookup_txt, interval=timedelta(days=1), grace=timedelta(hours=72), clock=clock
        )
        assert report.checked == 0
    assert database.tables.domains[domain_id].status == "verified"
    assert database.tables.credentials[credential.record.credential_id].is_active
    assert zone.lookups == []


async def test_recheck_skips_domains_checked_within_the_interval(
    database: InMemoryDatabase, zone: Zone, clock: Clock
) -> None:
    await verified_domain(database, await open_account(database), clock=clock)
    day = timedelta(days=1)
    report = await recheck.recheck_domains(database, zone.lookup_txt, interval=day, grace=day, clock=clock)
    assert report.checked == 0 and zone.lookups == []  # verified just now: checked at verification

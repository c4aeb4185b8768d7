"""The credential lifecycle use cases (rotate, end a previous secret's grace, suspend, resume, restrictions) on an
in-memory unit of work: what each decides and stores with its event, idempotent repeats (no event), and what a
refusal leaves behind (nothing). Concurrency on the real row locks: tests/integration/api."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from api_in_memory import LIMITS, Clock, InMemoryDatabase, open_account, verified_domain
from taifa_api.application import credential_lifecycle as lifecycle
from taifa_api.application import use_cases
from taifa_api.domain.errors import (
    CredentialExists,
    CredentialInactive,
    CredentialLimitReached,
    InvalidRequest,
    LastSecret,
    NotFound,
    RotationInProgress,
)
from taifa_api.domain.lifecycle import RestrictionsPatch, normalise_cidrs
from taifa_events import hash_secret
from taifa_events.auth_cache import AuthCacheEntry
from taifa_events.secrets import SMTP_PASSWORD_PATTERN, initial_secret_id, smtp_password_checksum_ok

QUOTAS = {"free": 200, "pro": 100000}


async def _credential(database: InMemoryDatabase, clock: Clock, plan: str = "pro") -> tuple[uuid.UUID, uuid.UUID]:
    account_id = await open_account(database, plan)
    domain_id = await verified_domain(database, account_id, f"d{uuid.uuid4().hex[:8]}.example", clock=clock)
    created = await use_cases.create_credential(database, account_id, domain_id, LIMITS, "t", clock=clock)
    return account_id, created.value.record.credential_id


def _events_since(database: InMemoryDatabase, count: int) -> list[str]:
    return database.event_types()[count:]


# --- creation ------------------------------------------------------------------------------------------------


async def test_a_new_credential_has_a_scannable_password_and_its_first_secret_has_the_derived_id(
    database: InMemoryDatabase, clock: Clock
) -> None:
    account_id = await open_account(database)
    domain_id = await verified_domain(database, account_id, clock=clock)
    created = (await use_cases.create_credential(database, account_id, domain_id, LIMITS, "t", clock=clock)).value
    assert re.fullmatch(SMTP_PASSWORD_PATTERN, created.password) and smtp_password_checksum_ok(created.password)
    assert created.secret.secret_id == initial_secret_id(created.record.credential_id)
    assert database.tables.events[-1].data.secret_id == created.secret.secret_id
    assert created.record.status == "active"


# --- rotation ------------------------------------------------------------------------------------------------


async def test_rotation_adds_a_newest_secret_and_gives_the_previous_one_its_grace_period(
    database: InMemoryDatabase, clock: Clock
) -> None:
    account_id, credential_id = await _credential(database, clock)
    first = initial_secret_id(credential_id)
    outcome = await lifecycle.rotate_credential(database, account_id, credential_id, 3600, "t", clock=clock)
    rotated = outcome.value
    (event,) = outcome.events
    assert event.event_type == "CredentialSecretRotated"
    assert event.data.previous_secret_id == first == rotated.previous.secret_id
    assert event.data.previous_secret_expires_at == clock.now + timedelta(seconds=3600) == rotated.previous.expires_at
    assert event.data.secret_hash == hash_secret(rotated.password) == database.tables.secret_hashes[credential_id]
    assert re.fullmatch(SMTP_PASSWORD_PATTERN, rotated.password)
    assert [s.secret_id for s in rotated.secrets] == [event.data.secret_id, first]
    assert database.tables.secrets[first].expires_at == rotated.previous.expires_at
    assert rotated.password not in repr(rotated) and rotated.password not in repr(outcome.events)


async def test_rotating_while_the_previous_secret_is_in_grace_is_refused_and_stores_nothing(
    database: InMemoryDatabase, clock: Clock
) -> None:
    account_id, credential_id = await _credential(database, clock)
    await lifecycle.rotate_credential(database, account_id, credential_id, 60, "t", clock=clock)
    before = (dict(database.tables.secrets), len(database.tables.events))
    with pytest.raises(RotationInProgress):
        await lifecycle.rotate_credential(database, account_id, credential_id, 60, "t", clock=clock)
    assert (dict(database.tables.secrets), len(database.tables.events)) == before
    clock.advance(timedelta(seconds=60))  # the grace has ended: a rotation may start again
    again = await lifecycle.rotate_credential(database, account_id, credential_id, 60, "t", clock=clock)
    assert len(again.value.secrets) == 2


async def test_grace_zero_retires_the_previous_secret_at_once_so_a_next_rotation_is_allowed(
    database: InMemoryDatabase, clock: Clock
) -> None:
    account_id, credential_id = await _credential(database, clock)
    rotated = (await lifecycle.rotate_credential(database, account_id, credential_id, 0, "t", clock=clock)).value
    assert rotated.previous.expires_at == clock.now and len(rotated.secrets) == 1
    await lifecycle.rotate_credential(database, account_id, credential_id, 0, "t", clock=clock)


async def test_grace_outside_zero_to_a_week_is_invalid(database: InMemoryDatabase, clock: Clock) -> None:
    account_id, credential_id = await _credential(database, clock)
    for grace in (-1, 604801):
        with pytest.raises(InvalidRequest):
            await lifecycle.rotate_credential(database, account_id, credential_id, grace, "t", clock=clock)


async def test_another_accounts_credential_is_not_found_for_every_lifecycle_command(
    database: InMemoryDatabase, clock: Clock
) -> None:
    _, credential_id = await _credential(database, clock)
    stranger = await open_account(database)
    count = len(database.tables.events)
    with pytest.raises(NotFound):
        await lifecycle.rotate_credential(database, stranger, credential_id, 0, "t", clock=clock)
    with pytest.raises(NotFound):
        await lifecycle.revoke_secret(database, stranger, credential_id, initial_secret_id(credential_id), "t")
    with pytest.raises(NotFound):
        await lifecycle.suspend_credential(database, stranger, credential_id, None, "t")
    with pytest.raises(NotFound):
        await lifecycle.resume_credential(database, stranger, credential_id, "t")
    with pytest.raises(NotFound):
        await lifecycle.change_restrictions(database, stranger, credential_id, RestrictionsPatch(), QUOTAS, "t")
    assert len(database.tables.events) == count


async def test_a_deactivated_credential_refuses_every_lifecycle_command(
    database: InMemoryDatabase, clock: Clock
) -> None:
    account_id, credential_id = await _credential(database, clock)
    await use_cases.deactivate_credential(database, account_id, credential_id, "t")
    count = len(database.tables.events)
    patch = RestrictionsPatch(allowed_cidrs=["203.0.113.0/24"])
    with pytest.raises(CredentialInactive):
        await lifecycle.rotate_credential(database, account_id, credential_id, 0, "t")
    with pytest.raises(CredentialInactive):
        await lifecycle.revoke_secret(database, account_id, credential_id, initial_secret_id(credential_id), "t")
    with pytest.raises(CredentialInactive):
        await lifecycle.suspend_credential(database, account_id, credential_id, None, "t")
    with pytest.raises(CredentialInactive):
        await lifecycle.resume_credential(database, account_id, credential_id, "t")
    with pytest.raises(CredentialInactive):
        await lifecycle.change_restrictions(database, account_id, credential_id, patch, QUOTAS, "t")
    assert len(database.tables.events) == count
    assert database.tables.credentials[credential_id].status == "deactivated"


async def test_an_operator_may_rotate_any_accounts_credential(database: InMemoryDatabase, clock: Clock) -> None:
    _, credential_id = await _credential(database, clock)
    outcome = await lifecycle.rotate_credential(database, None, credential_id, 0, "t", clock=clock)
    assert [e.event_type for e in outcome.events] == ["CredentialSecretRotated"]


# --- ending a previous secret's grace ------------------------------------------------------------------------


async def test_deleting_the_previous_secret_ends_its_grace_once_and_a_repeat_appends_nothing(
    database: InMemoryDatabase, clock: Clock
) -> None:
    account_id, credential_id = await _credential(database, clock)
    rotated = (await lifecycle.rotate_credential(database, account_id, credential_id, 3600, "t", clock=clock)).value
    previous = rotated.previous.secret_id
    first = await lifecycle.revoke_secret(database, account_id, credential_id, previous, "t", clock=clock)
    assert [e.event_type for e in first.events] == ["CredentialSecretRevoked"]
    assert first.events[0].data.secret_id == previous and database.tables.secrets[previous].revoked_at == clock.now
    assert [s.secret_id for s in first.value.secrets] == [rotated.secrets[0].secret_id]
    again = await lifecycle.revoke_secret(database, account_id, credential_id, previous, "t", clock=clock)
    assert again.events == []
    await lifecycle.rotate_credential(database, account_id, credential_id, 3600, "t", clock=clock)  # allowed now


async def test_an_expired_previous_secret_is_deleted_without_an_event(database: InMemoryDatabase, clock: Clock) -> None:
    account_id, credential_id = await _credential(database, clock)
    rotated = (await lifecycle.rotate_credential(database, account_id, credential_id, 10, "t", clock=clock)).value
    clock.advance(timedelta(seconds=11))
    outcome = await lifecycle.revoke_secret(database, account_id, credential_id, rotated.previous.secret_id, "t")
    assert outcome.events == [] and database.tables.secrets[rotated.previous.secret_id].revoked_at is None


async def test_the_newest_secret_cannot_be_deleted_and_an_unknown_secret_is_not_found(
    database: InMemoryDatabase, clock: Clock
) -> None:
    account_id, credential_id = await _credential(database, clock)
    with pytest.raises(LastSecret):
        await lifecycle.revoke_secret(database, account_id, credential_id, initial_secret_id(credential_id), "t")
    with pytest.raises(NotFound):
        await lifecycle.revoke_secret(database, account_id, credential_id, uuid.uuid4(), "t")
    _, other_credential = await _credential(database, clock)
    with pytest.raises(NotFound):  # another credential's secret, even of the same account's kind
        await lifecycle.revoke_secret(database, account_id, credential_id, initial_secret_id(other_credential), "t")


# --- suspend and resume --------------------------------------------------------------------------------------


async def test_suspend_and_resume_each_append_one_event_and_repeats_append_none(
    database: InMemoryDatabase, clock: Clock
) -> None:
    account_id, credential_id = await _credential(database, clock)
    suspended = await lifecycle.suspend_credential(
        database, account_id, credential_id, "abuse report", "t", clock=clock
    )
    assert [e.event_type for e in suspended.events] == ["CredentialSuspended"]
    assert suspended.events[0].data.reason == "abuse report"
    record = suspended.value.record
    assert (record.status, record.is_active, record.suspended_at, record.suspension_reason) == (
        "suspended",
        True,
        clock.now,
        "abuse report",
    )
    repeat = await lifecycle.suspend_credential(database, account_id, credential_id, "other", "t")
    assert repeat.events == [] and repeat.value.record.suspension_reason == "abuse report"
    resumed = await lifecycle.resume_credential(database, account_id, credential_id, "t", clock=clock)
    assert [e.event_type for e in resumed.events] == ["CredentialResumed"]
    assert (resumed.value.record.status, resumed.value.record.suspended_at) == ("active", None)
    assert (await lifecycle.resume_credential(database, account_id, credential_id, "t")).events == []


async def test_a_suspension_reason_over_200_characters_is_invalid(database: InMemoryDatabase, clock: Clock) -> None:
    account_id, credential_id = await _credential(database, clock)
    with pytest.raises(InvalidRequest):
        await lifecycle.suspend_credential(database, account_id, credential_id, "x" * 201, "t")


async def test_a_suspended_credential_blocks_a_second_one_for_its_domain_and_counts_against_the_plan(
    database: InMemoryDatabase, clock: Clock
) -> None:
    account_id = await open_account(database, "free")  # LIMITS: one credential
    domain_id = await verified_domain(database, account_id, clock=clock)
    other_domain = await verified_domain(database, account_id, "other.example", clock=clock)
    created = await use_cases.create_credential(database, account_id, domain_id, LIMITS, "t", clock=clock)
    await lifecycle.suspend_credential(database, account_id, created.value.record.credential_id, None, "t")
    with pytest.raises(CredentialExists):
        await use_cases.create_credential(database, account_id, domain_id, {"free": 5}, "t")
    with pytest.raises(CredentialLimitReached):
        await use_cases.create_credential(database, account_id, other_domain, LIMITS, "t")


# --- restrictions --------------------------------------------------------------------------------------------


async def test_restrictions_are_normalised_stored_and_evented_in_full(database: InMemoryDatabase, clock: Clock) -> None:
    account_id, credential_id = await _credential(database, clock)
    expiry = clock.now + timedelta(days=30)
    patch = RestrictionsPatch(
        allowed_cidrs=["203.0.113.0/24", "2001:DB8::/48", "198.51.100.7", "203.0.113.0/24"],
        expires_at=expiry,
        messages_per_minute=60,
    )
    outcome = await lifecycle.change_restrictions(database, account_id, credential_id, patch, QUOTAS, "t", clock=clock)
    (event,) = outcome.events
    assert event.event_type == "CredentialRestrictionsChanged"
    assert event.data.allowed_cidrs == ["203.0.113.0/24", "2001:db8::/48", "198.51.100.7/32"]
    assert event.data.expires_at == expiry
    assert (event.data.limits.messages_per_minute, event.data.limits.messages_per_day) == (60, None)
    # A later PATCH of one field keeps the others, and the event carries them all.
    day = await lifecycle.change_restrictions(
        database, account_id, credential_id, RestrictionsPatch(messages_per_day=5000), QUOTAS, "t", clock=clock
    )
    (second,) = day.events
    assert second.data.allowed_cidrs == event.data.allowed_cidrs and second.data.expires_at == expiry
    assert (second.data.limits.messages_per_minute, second.data.limits.messages_per_day) == (60, 5000)
    assert database.tables.credentials[credential_id].messages_per_day == 5000


async def test_clearing_restrictions_and_repeating_the_same_values(database: InMemoryDatabase, clock: Clock) -> None:
    account_id, credential_id = await _credential(database, clock)
    patch = RestrictionsPatch(allowed_cidrs=["10.0.0.0/8"], messages_per_day=10)
    await lifecycle.change_restrictions(database, account_id, credential_id, patch, QUOTAS, "t", clock=clock)
    same = await lifecycle.change_restrictions(database, account_id, credential_id, patch, QUOTAS, "t", clock=clock)
    assert same.events == []
    clear = RestrictionsPatch(allowed_cidrs=[], clear_expires_at=True, clear_messages_per_day=True)
    cleared = await lifecycle.change_restrictions(database, account_id, credential_id, clear, QUOTAS, "t", clock=clock)
    (event,) = cleared.events
    assert event.data.allowed_cidrs == [] and event.data.limits.messages_per_day is None
    record = database.tables.credentials[credential_id]
    assert (record.allowed_cidrs, record.expires_at, record.messages_per_day) == ((), None, None)


@pytest.mark.parametrize(
    "patch",
    [
        RestrictionsPatch(allowed_cidrs=["203.0.113.7/24"]),  # host bits set
        RestrictionsPatch(allowed_cidrs=["not-a-network"]),
        RestrictionsPatch(allowed_cidrs=["10.0.0.0/33"]),
        RestrictionsPatch(allowed_cidrs=["10.0.0.0/255.0.0.0"]),  # a netmask, not a prefix length
        RestrictionsPatch(allowed_cidrs=["fe80::%eth0/64"]),  # a zone id: no client address carries one
        RestrictionsPatch(allowed_cidrs=[f"10.0.{i}.0/24" for i in range(65)]),
        RestrictionsPatch(messages_per_minute=0),
        RestrictionsPatch(messages_per_day=100001),  # above the pro plan's daily quota
    ],
)
async def test_invalid_restrictions_are_refused_and_change_nothing(
    database: InMemoryDatabase, clock: Clock, patch: RestrictionsPatch
) -> None:
    account_id, credential_id = await _credential(database, clock)
    count = len(database.tables.events)
    with pytest.raises(InvalidRequest):
        await lifecycle.change_restrictions(database, account_id, credential_id, patch, QUOTAS, "t", clock=clock)
    assert len(database.tables.events) == count and database.tables.credentials[credential_id].allowed_cidrs == ()


async def test_an_expiry_not_in_the_future_is_invalid(database: InMemoryDatabase, clock: Clock) -> None:
    account_id, credential_id = await _credential(database, clock)
    for expiry in (clock.now, clock.now - timedelta(seconds=1)):
        with pytest.raises(InvalidRequest):
            await lifecycle.change_restrictions(
                database, account_id, credential_id, RestrictionsPatch(expires_at=expiry), QUOTAS, "t", clock=clock
            )


async def test_limits_are_bounded_by_the_accounts_plan_quota(database: InMemoryDatabase, clock: Clock) -> None:
    account_id, credential_id = await _credential(database, clock, plan="free")
    free_max = RestrictionsPatch(messages_per_day=200)
    await lifecycle.change_restrictions(database, account_id, credential_id, free_max, QUOTAS, "t", clock=clock)
    with pytest.raises(InvalidRequest):
        await lifecycle.change_restrictions(
            database, account_id, credential_id, RestrictionsPatch(messages_per_minute=201), QUOTAS, "t", clock=clock
        )


def test_ipv4_mapped_networks_are_stored_as_the_ipv4_networks_the_relay_compares() -> None:
    # The relay reads a client's ::ffff:203.0.113.5 as 203.0.113.5 and compares it with IPv4 networks only: stored
    # as given, ::ffff:203.0.113.0/120 would be accepted and then match no client at all.
    stored = normalise_cidrs(["::ffff:203.0.113.0/120", "::ffff:198.51.100.7", "::ffff:0:0/96", "2001:db8::/48"])
    assert stored == ("203.0.113.0/24", "198.51.100.7/32", "0.0.0.0/0", "2001:db8::/48")
    entry = AuthCacheEntry(
        credential_id=uuid.uuid4(),
        account_id=uuid.uuid4(),
        domain_id=uuid.uuid4(),
        domain="x.example",
        secret_hash="0" * 64,
        hash_scheme="sha256",
        active=True,
        position=1,
        allowed_cidrs=stored[:1],
    )
    assert entry.address_allowed("203.0.113.5") and entry.address_allowed("::ffff:203.0.113.5")


async def test_expiries_are_whole_seconds_as_the_relay_enforces_them(database: InMemoryDatabase, clock: Clock) -> None:
    """The relay's cache holds unix seconds: an expires_at set with a fraction, and a grace period's end, are cut to
    their whole second (never later than asked; a grace of 0 still ends at once)."""
    account_id, credential_id = await _credential(database, clock)
    asked = clock.now + timedelta(days=1, microseconds=700_000)
    patch = RestrictionsPatch(expires_at=asked)
    outcome = await lifecycle.change_restrictions(database, account_id, credential_id, patch, QUOTAS, "t", clock=clock)
    (event,) = outcome.events
    assert event.data.expires_at == asked.replace(microsecond=0)
    clock.now += timedelta(microseconds=300_000)
    rotated = await lifecycle.rotate_credential(database, account_id, credential_id, 60, "t", clock=clock)
    ends = rotated.value.previous.expires_at
    assert ends is not None and ends.microsecond == 0
    assert ends == (clock.now + timedelta(seconds=60)).replace(microsecond=0)

"""The use cases of the command side: each loads state through the unit of work, lets the domain decide the new
state and its events, and stores both in one transaction (row locks and unique constraints keep the invariants).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar
from uuid import UUID

from taifa_events import Envelope

from taifa_api.application.ports import AbstractUnitOfWork, Clock, NameAlreadyVerified, TxtLookup, UnitOfWorkFactory
from taifa_api.domain import accounts, credentials, domains, verification
from taifa_api.domain.errors import DomainAlreadyReleased, DomainLimitReached, DomainTaken, NotFound
from taifa_api.domain.models import CredentialRecord, DomainRecord, IssuedApiKey, NewCredential
from taifa_api.domain.names import normalise_domain_name
from taifa_api.domain.plans import DEFAULT_MAX_DOMAINS, may_add_domain

T = TypeVar("T")

REASON_TAKEN = domains.REASON_TAKEN


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a use case produced and the events it committed (empty when nothing changed)."""

    value: T
    events: list[Envelope[Any]]


def utc_now() -> datetime:
    return datetime.now(UTC)


# --- accounts and API keys (operator CLI) ----------------------------------------------------------------


async def create_account(
    uow: UnitOfWorkFactory, name: str, plan: str, correlation_id: str, *, clock: Clock = utc_now
) -> Outcome[IssuedApiKey]:
    """An account and its first API key."""
    now = clock()
    account, created = accounts.open_account(name, plan, now)
    key, issued, key_issued = accounts.issue_api_key(account.account_id, now)
    async with uow() as work:
        await work.accounts.add(account)
        await work.api_keys.add(key)
        events = await work.append([created, key_issued], correlation_id=correlation_id)
        await work.commit()
    return Outcome(issued, events)


async def issue_api_key(
    uow: UnitOfWorkFactory, account_id: UUID, correlation_id: str, *, clock: Clock = utc_now
) -> Outcome[IssuedApiKey]:
    async with uow() as work:
        if await work.accounts.lock_plan(account_id) is None:
            raise NotFound()
        key, issued, event = accounts.issue_api_key(account_id, clock())
        await work.api_keys.add(key)
        events = await work.append([event], correlation_id=correlation_id)
        await work.commit()
    return Outcome(issued, events)


async def revoke_api_key(
    uow: UnitOfWorkFactory, key_id: UUID, correlation_id: str, *, clock: Clock = utc_now
) -> Outcome[UUID]:
    """Revoke a key (idempotent: an already revoked key gives no new event)."""
    async with uow() as work:
        key = await work.api_keys.lock(key_id)
        if key is None:
            raise NotFound()
        revoked, event = accounts.revoke_api_key(key, clock())
        if event is None:
            return Outcome(key.account_id, [])
        await work.api_keys.save(revoked)
        events = await work.append([event], correlation_id=correlation_id)
        await work.commit()
    return Outcome(key.account_id, events)


# --- domains ---------------------------------------------------------------------------------------------


async def register_domain(
    uow: UnitOfWorkFactory,
    account_id: UUID,
    raw_name: str,
    correlation_id: str,
    *,
    max_domains: int = DEFAULT_MAX_DOMAINS,
    clock: Clock = utc_now,
) -> Outcome[DomainRecord]:
    """Register a domain (pending). Registering a name the account already has returns that domain.

    The per-account cap is checked under the account row lock, so concurrent registrations cannot pass it.
    """
    name = normalise_domain_name(raw_name)
    domain, event = domains.register(account_id, name, clock())
    async with uow() as work:
        if await work.accounts.lock_plan(account_id) is None:
            raise NotFound()
        existing = await work.domains.get_by_name(account_id, name)
        if existing is not None:
            return Outcome(existing, [])
        if not may_add_domain(await work.domains.count_live(account_id), max_domains):
            raise DomainLimitReached()
        if not await work.domains.add(domain):  # unreachable under the account lock; kept as a guard
            raise DomainLimitReached()
        events = await work.append([event], correlation_id=correlation_id)
        await work.commit()
    return Outcome(domain, events)


async def verify_domain(
    uow: UnitOfWorkFactory,
    account_id: UUID,
    domain_id: UUID,
    lookup_txt: TxtLookup,
    correlation_id: str,
    *,
    clock: Clock = utc_now,
) -> Outcome[DomainRecord]:
    """Look the TXT record up (outside any transaction), then record the result under a row lock."""
    async with uow() as work:
        domain = await work.domains.get(domain_id, account_id)
    if domain is None:
        raise NotFound()
    if domain.status == credentials.VERIFIED:
        return Outcome(domain, [])
    answer = await lookup_txt(domain.verification_name)
    found = answer.failure is None and verification.txt_proves_control(answer.values, domain.verification_value)
    reason = None if found else (answer.failure or f"TXT record {domain.verification_name} does not hold the value")
    return await _record_verification(uow, domain_id, account_id, reason, "dns", correlation_id, clock())


async def force_verify_domain(
    uow: UnitOfWorkFactory, domain_id: UUID, correlation_id: str, *, clock: Clock = utc_now
) -> Outcome[DomainRecord]:
    """Operator override: verified without DNS (still one account per verified name).

    Refused (DomainTaken, DomainAlreadyReleased, NotFound) rather than recorded as a failure: the operator
    gets an error and a non-zero exit, and nothing is appended.
    """
    return await _record_verification(uow, domain_id, None, None, "operator", correlation_id, clock())


async def _record_verification(
    uow: UnitOfWorkFactory,
    domain_id: UUID,
    account_id: UUID | None,
    failure: str | None,
    method: Literal["dns", "operator"],
    correlation_id: str,
    now: datetime,
) -> Outcome[DomainRecord]:
    operator = method == "operator"
    async with uow() as work:
        domain = await work.domains.get(domain_id, account_id, lock=True, include_released=operator)
        if domain is None:
            raise NotFound()
        if domain.status == credentials.RELEASED:
            raise DomainAlreadyReleased()
        if domain.status == credentials.VERIFIED:
            return Outcome(domain, [])
        if failure is None and await work.domains.name_verified_by_another_account(domain.name, domain.account_id):
            failure = REASON_TAKEN
        if failure is None:
            verified, event = domains.verify(domain, now, method)
            try:
                await work.domains.save(verified)
            except NameAlreadyVerified:
                failure = REASON_TAKEN
            else:
                events = await work.append([event], correlation_id=correlation_id)
                await work.commit()
                return Outcome(verified, events)
        if operator:
            raise DomainTaken()
        failed, failure_event = domains.fail_verification(domain, failure, now)
        await work.domains.save(failed)
        events = await work.append([failure_event] if failure_event else [], correlation_id=correlation_id)
        await work.commit()
    return Outcome(failed, events)


async def release_domain(
    uow: UnitOfWorkFactory,
    domain_id: UUID,
    account_id: UUID | None,
    reason: Literal["owner", "operator"],
    correlation_id: str,
    *,
    clock: Clock = utc_now,
) -> Outcome[DomainRecord]:
    """Release a domain (DELETE by its owner, or an operator): an already released one is NotFound."""
    async with uow() as work:
        domain = await work.domains.get(domain_id, account_id, lock=True)
        if domain is None:
            raise NotFound()
        events = await release_locked_domain(work, domain, reason, clock(), correlation_id)
        await work.commit()
    return Outcome(domain, events)


async def release_locked_domain(
    work: AbstractUnitOfWork,
    domain: DomainRecord,
    reason: domains.ReleaseReason,
    now: datetime,
    correlation_id: str,
) -> list[Envelope[Any]]:
    """In the caller's unit of work, with the domain row locked: deactivate every active credential of the
    domain, free the name and append the events (the deactivations first, then `DomainReleased`)."""
    active = await work.credentials.lock_active_of_domain(domain.domain_id)
    released, deactivated, events = domains.release(domain, active, reason, now)
    for credential in deactivated:
        await work.credentials.save(credential)
    await work.domains.save(released)
    return await work.append(events, correlation_id=correlation_id)


# --- SMTP credentials ------------------------------------------------------------------------------------


async def create_credential(
    uow: UnitOfWorkFactory,
    account_id: UUID,
    domain_id: UUID,
    limits: dict[str, int],
    correlation_id: str,
    *,
    clock: Clock = utc_now,
) -> Outcome[NewCredential]:
    """Create the domain's one active credential, within the plan's limit, under account and domain locks."""
    async with uow() as work:
        plan = await work.accounts.lock_plan(account_id)
        domain = await work.domains.get(domain_id, account_id, lock=True)
        if plan is None or domain is None:  # a released domain is not found either
            raise NotFound()
        credentials.check_may_create_credential(
            domain_status=domain.status,
            domain_has_active_credential=await work.credentials.domain_has_active(domain_id),
            plan=plan,
            active_credentials=await work.credentials.count_active(account_id),
            limits=limits,
        )
        created, event = credentials.create(account_id, domain, clock())
        await work.credentials.add(created.record, created.secret, event.secret_hash)  # CredentialExists past locks
        events = await work.append([event], correlation_id=correlation_id)
        await work.commit()
    return Outcome(created, events)


async def deactivate_credential(
    uow: UnitOfWorkFactory, account_id: UUID, credential_id: UUID, correlation_id: str, *, clock: Clock = utc_now
) -> Outcome[CredentialRecord]:
    """Deactivate for good; an already deactivated credential of this account changes nothing."""
    async with uow() as work:
        credential = await work.credentials.lock(credential_id, account_id)
        if credential is None:
            raise NotFound()
        deactivated, event = credentials.deactivate(credential, clock())
        if event is None:
            return Outcome(credential, [])
        await work.credentials.save(deactivated)
        events = await work.append([event], correlation_id=correlation_id)
        await work.commit()
    return Outcome(credential, events)

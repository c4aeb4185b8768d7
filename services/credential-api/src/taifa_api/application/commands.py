"""The use cases of the command side: each checks its invariants and appends its events in one transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar
from uuid import UUID, uuid4

import asyncpg
from taifa_events import (
    AccountCreated,
    ApiKeyIssued,
    ApiKeyRevoked,
    CredentialCreated,
    CredentialDeactivated,
    DomainRegistered,
    DomainReleased,
    DomainVerificationFailed,
    DomainVerified,
    Envelope,
    EventData,
    hash_secret,
)

from taifa_api.adapters import event_store, write_side
from taifa_api.domain import api_keys, credentials, verification
from taifa_api.domain.errors import (
    CredentialExists,
    DomainAlreadyReleased,
    DomainLimitReached,
    DomainTaken,
    NotFound,
)
from taifa_api.domain.models import CredentialRecord, DomainRecord, IssuedApiKey, NewCredential
from taifa_api.domain.names import normalise_domain_name
from taifa_api.domain.plans import DEFAULT_MAX_DOMAINS, may_add_domain

T = TypeVar("T")

REASON_TAKEN = "the domain is verified by another account"

TxtLookup = Callable[[str], Awaitable["DnsAnswer"]]
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class DnsAnswer:
    """TXT strings found at a name, or the reason none could be read.

    `conclusive` is False when DNS gave no answer at all (timeout, SERVFAIL): the record may still be there.
    """

    values: list[str] = field(default_factory=list)
    failure: str | None = None
    conclusive: bool = True


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a command produced and the events it committed (empty when nothing changed)."""

    value: T
    events: list[Envelope[Any]]


def _now() -> datetime:
    return datetime.now(UTC)


async def _append(conn: asyncpg.Connection, events: list[EventData], correlation_id: str) -> list[Envelope[Any]]:
    return await event_store.append(conn, events, correlation_id=correlation_id)


# --- accounts and API keys (operator CLI) ----------------------------------------------------------------


async def _issue_key(conn: asyncpg.Connection, account_id: UUID, now: datetime) -> tuple[IssuedApiKey, EventData]:
    key = api_keys.generate_api_key()
    key_id = uuid4()
    await write_side.insert_api_key(conn, key_id, account_id, hash_secret(key), now)
    return IssuedApiKey(key_id, account_id, key), ApiKeyIssued(account_id=account_id, key_id=key_id, created_at=now)


async def create_account(pool: asyncpg.Pool, name: str, plan: str, correlation_id: str) -> Outcome[IssuedApiKey]:
    account_id, now = uuid4(), _now()
    async with pool.acquire() as conn, conn.transaction():
        await write_side.insert_account(conn, account_id, name, plan, now)
        issued, key_event = await _issue_key(conn, account_id, now)
        created = AccountCreated(account_id=account_id, name=name, plan=plan, created_at=now)
        events = await _append(conn, [created, key_event], correlation_id)
    return Outcome(issued, events)


async def issue_api_key(pool: asyncpg.Pool, account_id: UUID, correlation_id: str) -> Outcome[IssuedApiKey]:
    async with pool.acquire() as conn, conn.transaction():
        if await write_side.lock_account_plan(conn, account_id) is None:
            raise NotFound()
        issued, event = await _issue_key(conn, account_id, _now())
        events = await _append(conn, [event], correlation_id)
    return Outcome(issued, events)


async def revoke_api_key(pool: asyncpg.Pool, key_id: UUID, correlation_id: str) -> Outcome[UUID]:
    """Revoke a key (idempotent: an already revoked key gives no new event)."""
    async with pool.acquire() as conn, conn.transaction():
        key = await write_side.lock_api_key(conn, key_id)
        if key is None:
            raise NotFound()
        if key.revoked_at is not None:
            return Outcome(key.account_id, [])
        now = _now()
        await write_side.revoke_api_key(conn, key_id, now)
        event = ApiKeyRevoked(account_id=key.account_id, key_id=key_id, revoked_at=now)
        return Outcome(key.account_id, await _append(conn, [event], correlation_id))


# --- domains ---------------------------------------------------------------------------------------------


async def register_domain(
    pool: asyncpg.Pool,
    account_id: UUID,
    raw_name: str,
    correlation_id: str,
    *,
    max_domains: int = DEFAULT_MAX_DOMAINS,
) -> Outcome[DomainRecord]:
    """Register a domain (pending). Registering a name the account already has returns that domain.

    The per-account cap is checked under the account row lock, so concurrent registrations cannot pass it.
    """
    name = normalise_domain_name(raw_name)
    now = _now()
    record = DomainRecord(
        domain_id=uuid4(),
        account_id=account_id,
        name=name,
        status=credentials.PENDING,
        status_reason=None,
        verification_name=verification.record_name(name),
        verification_value=verification.new_record_value(),
        created_at=now,
        verified_at=None,
    )
    async with pool.acquire() as conn, conn.transaction():
        if await write_side.lock_account_plan(conn, account_id) is None:
            raise NotFound()
        existing = await write_side.find_domain_by_name(conn, account_id, name)
        if existing is not None:
            return Outcome(existing, [])
        if not may_add_domain(await write_side.count_live_domains(conn, account_id), max_domains):
            raise DomainLimitReached()
        if not await write_side.insert_domain(conn, record):  # unreachable under the account lock; kept as a guard
            raise DomainLimitReached()
        event = DomainRegistered(
            domain_id=record.domain_id,
            account_id=account_id,
            name=name,
            verification_name=record.verification_name,
            verification_value=record.verification_value,
            created_at=now,
        )
        return Outcome(record, await _append(conn, [event], correlation_id))


async def verify_domain(
    pool: asyncpg.Pool,
    account_id: UUID,
    domain_id: UUID,
    lookup_txt: TxtLookup,
    correlation_id: str,
    *,
    clock: Clock = _now,
) -> Outcome[DomainRecord]:
    """Look the TXT record up (outside any transaction), then record the result under a row lock."""
    domain = await write_side.find_domain(pool, domain_id, account_id)
    if domain is None:
        raise NotFound()
    if domain.status == credentials.VERIFIED:
        return Outcome(domain, [])
    answer = await lookup_txt(domain.verification_name)
    found = answer.failure is None and verification.txt_proves_control(answer.values, domain.verification_value)
    reason = None if found else (answer.failure or f"TXT record {domain.verification_name} does not hold the value")
    return await _record_verification(pool, domain_id, account_id, reason, "dns", correlation_id, clock())


async def force_verify_domain(pool: asyncpg.Pool, domain_id: UUID, correlation_id: str) -> Outcome[DomainRecord]:
    """Operator override: verified without DNS (still one account per verified name).

    Refused (DomainTaken, DomainAlreadyReleased, NotFound) rather than recorded as a failure: the operator
    gets an error and a non-zero exit, and nothing is appended.
    """
    return await _record_verification(pool, domain_id, None, None, "operator", correlation_id, _now())


async def _record_verification(
    pool: asyncpg.Pool,
    domain_id: UUID,
    account_id: UUID | None,
    failure: str | None,
    method: str,
    correlation_id: str,
    now: datetime,
) -> Outcome[DomainRecord]:
    operator = method == "operator"
    async with pool.acquire() as conn, conn.transaction():
        domain = await write_side.find_domain(conn, domain_id, account_id, for_update=True, include_released=operator)
        if domain is None:
            raise NotFound()
        if domain.status == credentials.RELEASED:
            raise DomainAlreadyReleased()
        if domain.status == credentials.VERIFIED:
            return Outcome(domain, [])
        if failure is None and await write_side.name_verified_by_another_account(conn, domain.name, domain.account_id):
            failure = REASON_TAKEN
        if failure is None:
            try:
                async with conn.transaction():
                    await write_side.mark_domain_verified(conn, domain_id, now)
            except asyncpg.UniqueViolationError:
                failure = REASON_TAKEN
        if operator and failure is not None:
            raise DomainTaken()
        events: list[EventData] = []
        if failure is None:
            events.append(
                DomainVerified(
                    domain_id=domain_id, account_id=domain.account_id, name=domain.name, verified_at=now, method=method
                )
            )
        else:
            record = verification.should_record_failure(
                reason=failure,
                previous_reason=domain.status_reason,
                previous_recorded_at=domain.failure_recorded_at,
                now=now,
            )
            await write_side.set_domain_status_reason(conn, domain_id, failure, now if record else None)
            if record:
                events.append(
                    DomainVerificationFailed(
                        domain_id=domain_id, account_id=domain.account_id, reason=failure[:500], checked_at=now
                    )
                )
        appended = await _append(conn, events, correlation_id) if events else []
        updated = await write_side.find_domain(conn, domain_id, None)
        assert updated is not None
        return Outcome(updated, appended)


async def release_domain(
    pool: asyncpg.Pool,
    domain_id: UUID,
    account_id: UUID | None,
    reason: Literal["owner", "operator"],
    correlation_id: str,
) -> Outcome[DomainRecord]:
    """Release a domain (DELETE by its owner, or an operator): an already released one is NotFound."""
    async with pool.acquire() as conn, conn.transaction():
        domain = await write_side.find_domain(conn, domain_id, account_id, for_update=True)
        if domain is None:
            raise NotFound()
        events = await release_locked_domain(conn, domain, reason, _now(), correlation_id)
    return Outcome(domain, events)


async def release_locked_domain(
    conn: asyncpg.Connection,
    domain: DomainRecord,
    reason: Literal["owner", "operator", "verification_lost"],
    now: datetime,
    correlation_id: str,
) -> list[Envelope[Any]]:
    """In the caller's transaction, with the domain row locked: deactivate every active credential of the
    domain, free the name and append the events (the deactivations first, then `DomainReleased`)."""
    events: list[EventData] = []
    for credential in await write_side.lock_active_credentials_of_domain(conn, domain.domain_id):
        await write_side.deactivate_credential(conn, credential.credential_id, now)
        events.append(
            CredentialDeactivated(
                credential_id=credential.credential_id,
                account_id=credential.account_id,
                domain_id=credential.domain_id,
                username=credential.username,
                deactivated_at=now,
            )
        )
    await write_side.release_domain(conn, domain.domain_id, now)
    events.append(
        DomainReleased(
            domain_id=domain.domain_id, account_id=domain.account_id, name=domain.name, released_at=now, reason=reason
        )
    )
    return await _append(conn, events, correlation_id)


# --- SMTP credentials ------------------------------------------------------------------------------------


async def create_credential(
    pool: asyncpg.Pool, account_id: UUID, domain_id: UUID, limits: dict[str, int], correlation_id: str
) -> Outcome[NewCredential]:
    """Create the domain's one active credential, within the plan's limit, under account and domain locks."""
    now = _now()
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                plan = await write_side.lock_account_plan(conn, account_id)
                domain = await write_side.find_domain(conn, domain_id, account_id, for_update=True)
                if plan is None or domain is None:  # a released domain is not found either
                    raise NotFound()
                credentials.check_may_create_credential(
                    domain_status=domain.status,
                    domain_has_active_credential=await write_side.domain_has_active_credential(conn, domain_id),
                    plan=plan,
                    active_credentials=await write_side.count_active_credentials(conn, account_id),
                    limits=limits,
                )
                password = credentials.new_password()
                secret_hash = hash_secret(password)
                record = CredentialRecord(
                    credential_id=uuid4(),
                    account_id=account_id,
                    domain_id=domain_id,
                    username=credentials.username_for(account_id, domain.name),
                    is_active=True,
                    created_at=now,
                    deactivated_at=None,
                )
                await write_side.insert_credential(conn, record, secret_hash)
                event = CredentialCreated(
                    credential_id=record.credential_id,
                    account_id=account_id,
                    domain_id=domain_id,
                    domain=domain.name,
                    username=record.username,
                    secret_hash=secret_hash,
                    created_at=now,
                )
                events = await _append(conn, [event], correlation_id)
        except asyncpg.UniqueViolationError as exc:
            # The partial unique index is the last line of defence behind the row locks.
            raise CredentialExists() from exc
    return Outcome(NewCredential(record=record, domain=domain.name, password=password), events)


async def deactivate_credential(
    pool: asyncpg.Pool, account_id: UUID, credential_id: UUID, correlation_id: str
) -> Outcome[CredentialRecord]:
    """Deactivate for good; an already deactivated credential of this account changes nothing."""
    async with pool.acquire() as conn, conn.transaction():
        credential = await write_side.lock_credential(conn, credential_id, account_id)
        if credential is None:
            raise NotFound()
        if not credential.is_active:
            return Outcome(credential, [])
        now = _now()
        await write_side.deactivate_credential(conn, credential_id, now)
        event = CredentialDeactivated(
            credential_id=credential_id,
            account_id=account_id,
            domain_id=credential.domain_id,
            username=credential.username,
            deactivated_at=now,
        )
        events = await _append(conn, [event], correlation_id)
    return Outcome(credential, events)

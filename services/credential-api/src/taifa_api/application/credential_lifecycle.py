"""Use cases of the credential lifecycle after creation (docs/api.md, "Credential lifecycle"): rotate, end a
previous secret's grace, suspend, resume, change restrictions.

Each runs in one unit of work under the credential's row lock, so its invariants hold against concurrent
commands (two rotations: the second sees the first's previous secret in grace and is refused). `account_id`
None is an operator (`taifa-admin`): any account's credential. Repeats that change nothing append nothing.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from taifa_events import EventData

from taifa_api.application.ports import AbstractUnitOfWork, Clock, UnitOfWorkFactory
from taifa_api.application.use_cases import Outcome, utc_now
from taifa_api.domain import lifecycle
from taifa_api.domain.errors import NotFound
from taifa_api.domain.lifecycle import RestrictionsPatch
from taifa_api.domain.models import CredentialRecord, CredentialState, RotatedCredential


async def _locked(work: AbstractUnitOfWork, credential_id: UUID, account_id: UUID | None) -> CredentialRecord:
    credential = await work.credentials.lock(credential_id, account_id)
    if credential is None:  # unknown, or another account's: the same NotFound
        raise NotFound()
    return credential


async def _state(work: AbstractUnitOfWork, credential: CredentialRecord, now: datetime) -> CredentialState:
    return CredentialState(
        credential, lifecycle.valid_secrets(await work.credentials.secrets(credential.credential_id), now)
    )


async def rotate_credential(
    uow: UnitOfWorkFactory,
    account_id: UUID | None,
    credential_id: UUID,
    grace_seconds: int,
    correlation_id: str,
    *,
    clock: Clock = utc_now,
) -> Outcome[RotatedCredential]:
    """A new password; the current one keeps working for `grace_seconds`. `RotationInProgress` while an older
    secret is still in its grace, `CredentialInactive` once deactivated."""
    async with uow() as work:
        credential = await _locked(work, credential_id, account_id)
        secrets = await work.credentials.secrets(credential_id)
        rotated, new_secret, secret_hash, event = lifecycle.rotate(credential, secrets, grace_seconds, clock())
        await work.credentials.save_secret(rotated.previous)
        await work.credentials.add_secret(new_secret, secret_hash)
        events = await work.append([event], correlation_id=correlation_id)
        await work.commit()
    return Outcome(rotated, events)


async def revoke_secret(
    uow: UnitOfWorkFactory,
    account_id: UUID | None,
    credential_id: UUID,
    secret_id: UUID,
    correlation_id: str,
    *,
    clock: Clock = utc_now,
) -> Outcome[CredentialState]:
    """End a previous secret's grace period at once (`LastSecret` for the newest; an already expired or revoked
    previous secret changes nothing and appends nothing; another credential's secret is `NotFound`)."""
    now = clock()
    async with uow() as work:
        credential = await _locked(work, credential_id, account_id)
        secrets = await work.credentials.secrets(credential_id)
        revoked, event = lifecycle.revoke_secret(credential, secrets, secret_id, now)
        if event is None:
            return Outcome(await _state(work, credential, now), [])
        await work.credentials.save_secret(revoked)
        events = await work.append([event], correlation_id=correlation_id)
        state = await _state(work, credential, now)
        await work.commit()
    return Outcome(state, events)


async def suspend_credential(
    uow: UnitOfWorkFactory,
    account_id: UUID | None,
    credential_id: UUID,
    reason: str | None,
    correlation_id: str,
    *,
    clock: Clock = utc_now,
) -> Outcome[CredentialState]:
    """Suspend (reversible); repeating it changes nothing (the first reason stays)."""
    now = clock()
    async with uow() as work:
        credential = await _locked(work, credential_id, account_id)
        suspended, event = lifecycle.suspend(credential, reason, now)
        return await _store(work, suspended, event, correlation_id, now)


async def resume_credential(
    uow: UnitOfWorkFactory, account_id: UUID | None, credential_id: UUID, correlation_id: str, *, clock: Clock = utc_now
) -> Outcome[CredentialState]:
    """Resume a suspended credential; resuming an active one changes nothing."""
    now = clock()
    async with uow() as work:
        credential = await _locked(work, credential_id, account_id)
        resumed, event = lifecycle.resume(credential, now)
        return await _store(work, resumed, event, correlation_id, now)


async def change_restrictions(
    uow: UnitOfWorkFactory,
    account_id: UUID | None,
    credential_id: UUID,
    patch: RestrictionsPatch,
    daily_quotas: dict[str, int],
    correlation_id: str,
    *,
    clock: Clock = utc_now,
) -> Outcome[CredentialState]:
    """Set the CIDR allowlist, expiry and limits; the limits may not exceed the account plan's daily quota."""
    now = clock()
    async with uow() as work:
        credential = await _locked(work, credential_id, account_id)
        # Read, not locked: plans never change, and locking the account after the credential would take the two
        # locks in the order opposite to a credential's creation (account, domain) and a domain's release (domain,
        # its credentials): three such requests at once deadlocked.
        plan = await work.accounts.plan(credential.account_id)
        quota = daily_quotas.get(plan or "", 0)
        changed, event = lifecycle.change_restrictions(credential, patch, quota, now)
        return await _store(work, changed, event, correlation_id, now)


async def _store(
    work: AbstractUnitOfWork, credential: CredentialRecord, event: EventData | None, correlation_id: str, now: datetime
) -> Outcome[CredentialState]:
    """Store the new state with its event and commit; nothing to store when the command changed nothing."""
    state = await _state(work, credential, now)
    if event is None:
        return Outcome(state, [])
    await work.credentials.save(credential)
    events = await work.append([event], correlation_id=correlation_id)
    await work.commit()
    return Outcome(state, events)

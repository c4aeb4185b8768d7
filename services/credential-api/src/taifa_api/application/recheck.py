"""Re-verification of verified domains (`taifa-admin domain recheck`, run by a CronJob).

Each verified domain is looked up again once its last check is older than the interval. A record that is
provably missing starts a clock in the write side (`verification_missing_since`, no event per check); a
later successful check clears it; a domain whose record has stayed missing for the grace period (72 h by
default, as SES does for DKIM records) is released with `DomainReleased(reason="verification_lost")` and its
credentials deactivated in the same transaction, so another account may verify the name. Domains an operator
verified without DNS (`taifa-admin domain verify --force`) are not looked up: they never needed the record.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from taifa_events import Envelope

from taifa_api.application.ports import Clock, TxtLookup, UnitOfWorkFactory
from taifa_api.application.use_cases import release_locked_domain, utc_now
from taifa_api.domain import credentials, domains, verification
from taifa_api.domain.models import DomainRecord
from taifa_api.domain.verification import Recheck

log = logging.getLogger(__name__)


@dataclass
class RecheckReport:
    """What one run did, printed by the CLI as JSON (ids only: no names of other tenants in logs)."""

    checked: int = 0
    confirmed: int = 0
    missing: int = 0
    released: list[UUID] = field(default_factory=list)
    events: list[Envelope[Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Observation:
    """One lookup of a domain's verification record: found, or missing (provably, or DNS gave no answer)."""

    found: bool
    conclusive: bool


async def observe(lookup_txt: TxtLookup, domain: DomainRecord) -> Observation:
    """Look the record up through the DNS port (never raises: failures are answers)."""
    answer = await lookup_txt(domain.verification_name)
    found = answer.failure is None and verification.txt_proves_control(answer.values, domain.verification_value)
    return Observation(found=found, conclusive=found or answer.failure is None or answer.conclusive)


async def _apply(
    uow: UnitOfWorkFactory, looked_up: DomainRecord, seen: Observation, grace: timedelta, now: datetime
) -> tuple[Recheck | None, list[Envelope[Any]]]:
    """Decide again under the row lock (the domain may have been released or re-verified meanwhile)."""
    async with uow() as work:
        domain = await work.domains.get(looked_up.domain_id, None, lock=True)
        if domain is None or domain.status != credentials.VERIFIED:
            return None, []
        decision = verification.recheck_outcome(
            found=seen.found,
            conclusive=seen.conclusive,
            missing_since=domain.verification_missing_since,
            now=now,
            grace=grace,
        )
        checked = domains.record_recheck(domain, decision, now)
        await work.domains.save(checked)
        events: list[Envelope[Any]] = []
        if decision is Recheck.RELEASE:
            events = await release_locked_domain(work, checked, "verification_lost", now, f"recheck:{domain.domain_id}")
        await work.commit()
    return decision, events


async def recheck_domains(
    uow: UnitOfWorkFactory,
    lookup_txt: TxtLookup,
    *,
    interval: timedelta,
    grace: timedelta,
    clock: Clock = utc_now,
    batch_size: int = 100,
    concurrency: int = 10,
) -> RecheckReport:
    """Check every verified domain not checked within `interval`, `concurrency` lookups at a time."""
    report = RecheckReport()
    checked_before = clock() - interval
    seen: set[UUID] = set()
    limit = asyncio.Semaphore(concurrency)

    async def one(domain: DomainRecord) -> None:
        async with limit:
            seen_now = await observe(lookup_txt, domain)
        decision, events = await _apply(uow, domain, seen_now, grace, clock())
        if decision is None:
            return
        report.checked += 1
        report.confirmed += decision is Recheck.CONFIRMED
        report.missing += decision in (Recheck.START_CLOCK, Recheck.STILL_MISSING)
        if decision is Recheck.RELEASE:
            report.released.append(domain.domain_id)
            report.events.extend(events)
            log.warning("domain %s released: verification record missing past the grace period", domain.domain_id)

    while True:
        async with uow() as work:
            batch = await work.domains.due_for_recheck(checked_before, batch_size)
        due = [d for d in batch if d.domain_id not in seen]
        if not due:
            return report
        seen.update(d.domain_id for d in due)
        await asyncio.gather(*(one(domain) for domain in due))

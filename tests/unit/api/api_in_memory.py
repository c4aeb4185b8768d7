"""In-memory fakes of the credential API's own ports (application/ports.py): a unit of work over dicts, with the
write side's unique constraints, commit and rollback, and an event store; a scripted DNS zone; a settable clock.

Row locks are PostgreSQL's job: tests/integration/api/test_api_concurrency.py drives them on the real database.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from taifa_api.application import use_cases
from taifa_api.application.ports import AbstractUnitOfWork, DnsAnswer, NameAlreadyVerified
from taifa_api.domain import credentials as rules
from taifa_api.domain.errors import CredentialExists
from taifa_api.domain.models import AccountRecord, ApiKeyRecord, CredentialRecord, DomainRecord, SecretRecord
from taifa_events import Envelope, EventData, make_envelope


@dataclass
class Tables:
    """What the database holds; a unit of work changes a copy and puts it back on commit."""

    accounts: dict[UUID, AccountRecord] = field(default_factory=dict)
    api_keys: dict[UUID, ApiKeyRecord] = field(default_factory=dict)
    domains: dict[UUID, DomainRecord] = field(default_factory=dict)
    credentials: dict[UUID, CredentialRecord] = field(default_factory=dict)
    secret_hashes: dict[UUID, str] = field(default_factory=dict)  # by credential: its newest secret's hash
    secrets: dict[UUID, SecretRecord] = field(default_factory=dict)
    revoked_sessions: dict[str, datetime | None] = field(default_factory=dict)
    events: list[Envelope[Any]] = field(default_factory=list)


class _Repository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables


class InMemoryAccounts(_Repository):
    async def add(self, account: AccountRecord) -> None:
        self._t.accounts[account.account_id] = account

    async def lock_plan(self, account_id: UUID) -> str | None:
        account = self._t.accounts.get(account_id)
        return account.plan if account else None

    async def plan(self, account_id: UUID) -> str | None:
        return await self.lock_plan(account_id)


class InMemoryApiKeys(_Repository):
    async def add(self, key: ApiKeyRecord) -> None:
        self._t.api_keys[key.key_id] = key

    async def lock(self, key_id: UUID) -> ApiKeyRecord | None:
        return self._t.api_keys.get(key_id)

    async def save(self, key: ApiKeyRecord) -> None:
        self._t.api_keys[key.key_id] = key


class InMemoryDomains(_Repository):
    def _live(self) -> list[DomainRecord]:
        return [d for d in self._t.domains.values() if d.status != rules.RELEASED]

    async def add(self, domain: DomainRecord) -> bool:
        if any(d.account_id == domain.account_id and d.name == domain.name for d in self._live()):
            return False
        self._t.domains[domain.domain_id] = domain
        return True

    async def get(
        self, domain_id: UUID, account_id: UUID | None, *, lock: bool = False, include_released: bool = False
    ) -> DomainRecord | None:
        domain = self._t.domains.get(domain_id)
        if domain is None or (account_id is not None and domain.account_id != account_id):
            return None
        return domain if include_released or domain.status != rules.RELEASED else None

    async def get_by_name(self, account_id: UUID, name: str) -> DomainRecord | None:
        return next((d for d in self._live() if d.account_id == account_id and d.name == name), None)

    async def count_live(self, account_id: UUID) -> int:
        return sum(d.account_id == account_id for d in self._live())

    async def name_verified_by_another_account(self, name: str, account_id: UUID) -> bool:
        verified = (d for d in self._t.domains.values() if d.status == rules.VERIFIED)
        return any(d.name == name and d.account_id != account_id for d in verified)

    async def save(self, domain: DomainRecord) -> None:
        if domain.status == rules.VERIFIED and any(
            d.name == domain.name and d.status == rules.VERIFIED and d.domain_id != domain.domain_id
            for d in self._t.domains.values()
        ):
            raise NameAlreadyVerified()
        self._t.domains[domain.domain_id] = domain

    async def due_for_recheck(self, checked_before: datetime, limit: int) -> list[DomainRecord]:
        oldest = datetime.min.replace(tzinfo=UTC)
        due = [
            d
            for d in self._t.domains.values()
            if d.status == rules.VERIFIED
            and d.verification_method != "operator"
            and (d.verification_checked_at is None or d.verification_checked_at < checked_before)
        ]
        due.sort(key=lambda d: (d.verification_checked_at or oldest, d.domain_id))
        return due[:limit]


class InMemoryCredentials(_Repository):
    def _active(self) -> list[CredentialRecord]:
        return [c for c in self._t.credentials.values() if c.is_active]

    async def add(self, credential: CredentialRecord, secret: SecretRecord, secret_hash: str) -> None:
        if any(c.domain_id == credential.domain_id for c in self._active()):
            raise CredentialExists()  # the partial unique index
        self._t.credentials[credential.credential_id] = credential
        await self.add_secret(secret, secret_hash)

    async def lock(self, credential_id: UUID, account_id: UUID | None) -> CredentialRecord | None:
        found = self._t.credentials.get(credential_id)
        return found if found is not None and account_id in (None, found.account_id) else None

    async def secrets(self, credential_id: UUID) -> list[SecretRecord]:
        mine = [s for s in self._t.secrets.values() if s.credential_id == credential_id]
        return sorted(mine, key=lambda s: s.created_at, reverse=True)

    async def add_secret(self, secret: SecretRecord, secret_hash: str) -> None:
        assert secret.secret_id not in self._t.secrets, "secret ids are primary keys"
        self._t.secrets[secret.secret_id] = secret
        self._t.secret_hashes[secret.credential_id] = secret_hash

    async def save_secret(self, secret: SecretRecord) -> None:
        assert secret.secret_id in self._t.secrets
        self._t.secrets[secret.secret_id] = secret

    async def lock_active_of_domain(self, domain_id: UUID) -> list[CredentialRecord]:
        return sorted(
            (c for c in self._active() if c.domain_id == domain_id), key=lambda c: (c.created_at, c.credential_id)
        )

    async def domain_has_active(self, domain_id: UUID) -> bool:
        return any(c.domain_id == domain_id for c in self._active())

    async def count_active(self, account_id: UUID) -> int:
        return sum(c.account_id == account_id for c in self._active())

    async def save(self, credential: CredentialRecord) -> None:
        self._t.credentials[credential.credential_id] = credential


class InMemoryRevokedSessions(_Repository):
    async def add(self, jti: str, expires_at: datetime | None, now: datetime) -> bool:
        if jti not in self._t.revoked_sessions:
            self._t.revoked_sessions[jti] = expires_at
            return True
        previous = self._t.revoked_sessions[jti]
        self._t.revoked_sessions[jti] = None if previous is None or expires_at is None else max(previous, expires_at)
        return False

    async def delete_expired(self, expired_before: datetime) -> None:
        for jti, expires_at in list(self._t.revoked_sessions.items()):
            if expires_at is not None and expires_at < expired_before:
                del self._t.revoked_sessions[jti]


class InMemoryUnitOfWork(AbstractUnitOfWork):
    def __init__(self, database: InMemoryDatabase) -> None:
        self._database = database
        self._work: Tables | None = None
        self.committed = False

    async def __aenter__(self) -> InMemoryUnitOfWork:
        self._work = copy.deepcopy(self._database.tables)
        self.accounts = InMemoryAccounts(self._work)
        self.api_keys = InMemoryApiKeys(self._work)
        self.domains = InMemoryDomains(self._work)
        self.credentials = InMemoryCredentials(self._work)
        self.revoked_sessions = InMemoryRevokedSessions(self._work)
        self._database.opened += 1
        return self

    async def append(self, events: Sequence[EventData], *, correlation_id: str) -> list[Envelope[Any]]:
        assert self._work is not None, "append outside the unit of work"
        stored = []
        for data in events:
            version = 1 + sum(e.stream_id == data.stream_id() for e in self._work.events)
            envelope = make_envelope(
                data,
                stream_version=version,
                position=len(self._work.events) + 1,
                correlation_id=correlation_id,
                metadata=self.metadata,
            )
            self._work.events.append(envelope)
            stored.append(envelope)
        return stored

    async def commit(self) -> None:
        assert self._work is not None, "commit outside the unit of work, or twice"
        self._database.tables, self._work = self._work, None
        self.committed = True

    async def rollback(self) -> None:
        self._work = None


@dataclass
class InMemoryDatabase:
    """The factory the use cases are given (`uow=database`): each call is a new unit of work on these tables."""

    tables: Tables = field(default_factory=Tables)
    opened: int = 0

    def __call__(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self)

    def event_types(self) -> list[str]:
        return [e.event_type for e in self.tables.events]


@dataclass
class Zone:
    """A scripted DNS: TXT values per name, names that time out; anything else is NXDOMAIN."""

    txt: dict[str, list[str]] = field(default_factory=dict)
    timing_out: set[str] = field(default_factory=set)
    lookups: list[str] = field(default_factory=list)

    async def lookup_txt(self, name: str) -> DnsAnswer:
        self.lookups.append(name)
        if name in self.timing_out:
            return DnsAnswer(failure=f"DNS lookup of {name} timed out", conclusive=False)
        if name not in self.txt:
            return DnsAnswer(failure=f"no DNS record at {name}")
        return DnsAnswer(values=self.txt[name])


@dataclass
class Clock:
    now: datetime = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> datetime:
        self.now += by
        return self.now


# --- seeding through the use cases --------------------------------------------------------------------------

LIMITS = {"free": 1, "pro": 25}


async def open_account(database: InMemoryDatabase, plan: str = "pro") -> UUID:
    return (await use_cases.create_account(database, "acme", plan, "t")).value.account_id


async def verified_domain(
    database: InMemoryDatabase, account_id: UUID, name: str = "mail.example", *, clock: Clock | None = None
) -> UUID:
    """Registered and verified by the operator (at `clock`, else now)."""
    at = clock or Clock(datetime.now(UTC))
    domain = (await use_cases.register_domain(database, account_id, name, "t", clock=at)).value
    await use_cases.force_verify_domain(database, domain.domain_id, "t", clock=at)
    return domain.domain_id


async def dns_verified_domain(
    database: InMemoryDatabase, zone: Zone, account_id: UUID, name: str = "mail.example", *, clock: Clock
) -> UUID:
    """Registered and verified through DNS at `clock`; the record is then taken away (the re-check's tests put it
    back as they need)."""
    domain = (await use_cases.register_domain(database, account_id, name, "t", clock=clock)).value
    zone.txt[domain.verification_name] = [domain.verification_value]
    await use_cases.verify_domain(database, account_id, domain.domain_id, zone.lookup_txt, "t", clock=clock)
    del zone.txt[domain.verification_name]
    return domain.domain_id

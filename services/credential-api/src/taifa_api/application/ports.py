"""What the use cases need from the outside world, as interfaces: the unit of work (repositories of the write
side's tables and the event store, in one transaction), DNS, the clock and the projection's applied signal.

Adapters implement them (adapters/unit_of_work.py for PostgreSQL, adapters/dns.py for dnspython); the unit
tests use in-memory fakes of these same interfaces.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self
from uuid import UUID

from taifa_events import Envelope, EventData, EventMetadata

from taifa_api.domain.models import AccountRecord, ApiKeyRecord, CredentialRecord, DomainRecord, SecretRecord
from taifa_api.domain.webhooks import WebhookEndpoint

Clock = Callable[[], datetime]


# --- DNS -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DnsAnswer:
    """TXT strings found at a name, or the reason none could be read.

    `conclusive` is False when DNS gave no answer at all (timeout, SERVFAIL): the record may still be there.
    """

    values: list[str] = field(default_factory=list)
    failure: str | None = None
    conclusive: bool = True


TxtLookup = Callable[[str], Awaitable[DnsAnswer]]


class DnsResolver(Protocol):
    async def lookup_txt(self, name: str) -> DnsAnswer:
        """The TXT strings at `name`; every failure is an answer (never an exception)."""


# --- the projection's applied signal (read-your-writes) ----------------------------------------------------


class ProjectionWaiter(Protocol):
    async def wait_applied(self, event_id: UUID, within_seconds: float) -> bool:
        """True when the projector signalled `event_id` applied within `within_seconds`."""

    async def wait_entry_at(self, username: str, event_id: UUID, position: int, within_seconds: float) -> bool:
        """True when the relay's auth-cache entry of `username` holds the effects of `event_id` (at `position`) or
        of a later event, within `within_seconds`."""


# --- repositories of the write side ----------------------------------------------------------------------


class AccountRepository(Protocol):
    async def add(self, account: AccountRecord) -> None: ...

    async def lock_plan(self, account_id: UUID) -> str | None:
        """Lock the account (serialises its credential and domain changes) and return its plan; None if unknown."""

    async def plan(self, account_id: UUID) -> str | None:
        """The account's plan without locking it (plans never change); None if unknown."""


class ApiKeyRepository(Protocol):
    async def add(self, key: ApiKeyRecord) -> None: ...

    async def lock(self, key_id: UUID) -> ApiKeyRecord | None: ...

    async def save(self, key: ApiKeyRecord) -> None:
        """Store the key's revocation."""


class DomainRepository(Protocol):
    async def add(self, domain: DomainRecord) -> bool:
        """False (nothing stored) when the account already holds a live domain of that name."""

    async def get(
        self, domain_id: UUID, account_id: UUID | None, *, lock: bool = False, include_released: bool = False
    ) -> DomainRecord | None:
        """The domain if it exists, is live (unless asked) and belongs to `account_id` (when given)."""

    async def get_by_name(self, account_id: UUID, name: str) -> DomainRecord | None:
        """The account's live domain of that name."""

    async def count_live(self, account_id: UUID) -> int: ...

    async def name_verified_by_another_account(self, name: str, account_id: UUID) -> bool: ...

    async def save(self, domain: DomainRecord) -> None:
        """Store the domain's state. Raises `NameAlreadyVerified` (and stores nothing, the unit of work still
        usable) when the domain is verified but another account holds the verified name."""

    async def due_for_recheck(self, checked_before: datetime, limit: int) -> list[DomainRecord]:
        """Verified domains last checked before `checked_before` (never checked first), oldest first; not those an
        operator verified without DNS (`verification_method` `operator`)."""


class CredentialRepository(Protocol):
    async def add(self, credential: CredentialRecord, secret: SecretRecord, secret_hash: str) -> None:
        """Store a new credential with its first secret. Raises `CredentialExists` when the domain already has an
        active (or suspended) credential."""

    async def lock(self, credential_id: UUID, account_id: UUID | None) -> CredentialRecord | None:
        """Lock the credential's row (serialises its lifecycle commands) if it exists and belongs to `account_id`
        (any account when None: operators)."""

    async def secrets(self, credential_id: UUID) -> list[SecretRecord]:
        """Every secret the credential ever had (expired and revoked ones too); call it under the row lock."""

    async def add_secret(self, secret: SecretRecord, secret_hash: str) -> None: ...

    async def save_secret(self, secret: SecretRecord) -> None:
        """Store a secret's expiry and revocation."""

    async def lock_active_of_domain(self, domain_id: UUID) -> list[CredentialRecord]: ...

    async def domain_has_active(self, domain_id: UUID) -> bool: ...

    async def count_active(self, account_id: UUID) -> int: ...

    async def save(self, credential: CredentialRecord) -> None:
        """Store the credential's state: status, suspension, restrictions, deactivation."""


class RevokedSessionRepository(Protocol):
    async def add(self, jti: str, expires_at: datetime | None, now: datetime) -> bool:
        """True if the revocation is new; a repeated one keeps the later expiry (or none, if either has none)."""

    async def delete_expired(self, expired_before: datetime) -> None: ...


class WebhookRepository(Protocol):
    """The account's webhook endpoints (adapters/webhook_endpoints.py); secrets are stored only as ciphertexts."""

    async def count(self, account_id: UUID) -> int: ...

    async def add(self, endpoint: WebhookEndpoint, secret_ciphertext: bytes) -> None: ...

    async def lock(self, webhook_id: UUID, account_id: UUID | None) -> WebhookEndpoint | None:
        """Lock the endpoint's row if it exists and belongs to `account_id` (any account when None: operators)."""

    async def rotate_secret(self, endpoint: WebhookEndpoint, secret_ciphertext: bytes) -> None:
        """The stored secret becomes the previous one (valid until `endpoint.previous_secret_expires_at`), the
        new ciphertext the current one."""

    async def save_status(self, endpoint: WebhookEndpoint) -> None:
        """Store the endpoint's status, `disabled_at` and `disabled_reason`."""

    async def delete(self, webhook_id: UUID) -> None:
        """Remove the endpoint with its deliveries and attempts."""


class NameAlreadyVerified(Exception):
    """Storing a verified domain found the name verified by another account (one account per verified name)."""


# --- the unit of work ------------------------------------------------------------------------------------


class AbstractUnitOfWork(abc.ABC):
    """One transaction: the repositories' reads and writes and the appended events commit together or not at all.

    Used as `async with uow_factory() as uow: ...; await uow.commit()`; leaving without `commit()` (an early
    return, an exception) rolls everything back.
    """

    accounts: AccountRepository
    api_keys: ApiKeyRepository
    domains: DomainRepository
    credentials: CredentialRepository
    revoked_sessions: RevokedSessionRepository
    webhooks: WebhookRepository
    # Who caused the command, from where, in which request (set by `request_context.with_metadata`): every event
    # this unit appends carries it in its envelope. None: no request context (the events read as actor unknown).
    metadata: EventMetadata | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.rollback()

    @abc.abstractmethod
    async def append(self, events: Sequence[EventData], *, correlation_id: str) -> list[Envelope[Any]]:
        """Append `events` to the event store in this transaction, with this unit's `metadata`; their envelopes,
        with positions."""

    @abc.abstractmethod
    async def commit(self) -> None: ...

    @abc.abstractmethod
    async def rollback(self) -> None:
        """Undo everything not committed (nothing after `commit()`)."""


UnitOfWorkFactory = Callable[[], AbstractUnitOfWork]

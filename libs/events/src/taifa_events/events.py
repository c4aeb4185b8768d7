"""The domain events of Taifa Mail: small immutable records named in the past tense.

Each event type declares its topic, its current schema version and the stream (aggregate) it
belongs to. The Kafka message key is the partition key: the domain id for everything that touches
a domain or its SMTP username, so that those events stay in one partition, in order.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, NoReturn
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from taifa_events import topics
from taifa_events.secrets import initial_secret_id

Plan = Literal["free", "starter", "pro", "enterprise"]
SECRET_HASH_PATTERN = r"^[0-9a-f]{64}$"  # noqa: S105  (a pattern, not a secret)


def _refuse_plaintext_secret(value: Any, info: ValidationInfo) -> NoReturn:
    raise ValueError(f"events never carry plaintext secrets (field {info.field_name!r})")


# Declared as fields (always None, never serialised) rather than checked by a model validator: a field's
# validator runs only when the field is present, so valid events pay nothing for the check, while a
# model validator would be a Python call for every event decoded (a tenth of the projector's CPU).
_NoPlaintextSecret = Annotated[None, BeforeValidator(_refuse_plaintext_secret), Field(exclude=True, repr=False)]


class EventData(BaseModel):
    """Base of every event payload. Unknown fields are ignored (forward compatibility)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    EVENT_TYPE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC: ClassVar[str]

    # Field names that would carry a plaintext secret: refused outright (only hashes travel); absent -> None.
    password: _NoPlaintextSecret = None
    secret: _NoPlaintextSecret = None
    api_key: _NoPlaintextSecret = None
    plaintext: _NoPlaintextSecret = None
    token: _NoPlaintextSecret = None

    def stream_id(self) -> UUID:
        """The aggregate this event belongs to."""
        raise NotImplementedError

    def partition_key(self) -> UUID:
        """The Kafka message key."""
        raise NotImplementedError


class _AccountEvent(EventData):
    TOPIC: ClassVar[str] = topics.ACCOUNTS
    account_id: UUID

    def stream_id(self) -> UUID:
        return self.account_id

    def partition_key(self) -> UUID:
        return self.account_id


class AccountCreated(_AccountEvent):
    EVENT_TYPE: ClassVar[str] = "AccountCreated"
    name: str = Field(min_length=1, max_length=200)
    plan: Plan
    created_at: AwareDatetime


class ApiKeyIssued(_AccountEvent):
    EVENT_TYPE: ClassVar[str] = "ApiKeyIssued"
    key_id: UUID
    created_at: AwareDatetime


class ApiKeyRevoked(_AccountEvent):
    EVENT_TYPE: ClassVar[str] = "ApiKeyRevoked"
    key_id: UUID
    revoked_at: AwareDatetime


class _DomainEvent(EventData):
    TOPIC: ClassVar[str] = topics.DOMAINS
    domain_id: UUID
    account_id: UUID

    def stream_id(self) -> UUID:
        return self.domain_id

    def partition_key(self) -> UUID:
        return self.domain_id


class DomainRegistered(_DomainEvent):
    EVENT_TYPE: ClassVar[str] = "DomainRegistered"
    name: str = Field(min_length=1, max_length=253)
    verification_name: str
    verification_value: str
    created_at: AwareDatetime


class DomainVerified(_DomainEvent):
    EVENT_TYPE: ClassVar[str] = "DomainVerified"
    name: str
    verified_at: AwareDatetime
    method: Literal["dns", "operator"] = "dns"


class DomainVerificationFailed(_DomainEvent):
    EVENT_TYPE: ClassVar[str] = "DomainVerificationFailed"
    reason: str = Field(max_length=500)
    checked_at: AwareDatetime


class DomainReleased(_DomainEvent):
    """The account no longer holds the name: released by its owner (DELETE), by an operator, or because its
    verification record stayed missing past the grace period. Its credentials are deactivated by
    `CredentialDeactivated` events appended in the same transaction; another account may verify the name."""

    EVENT_TYPE: ClassVar[str] = "DomainReleased"
    name: str
    released_at: AwareDatetime
    reason: Literal["owner", "verification_lost", "operator"] = "owner"


class _CredentialEvent(EventData):
    """Credential events live in the credential's stream but are keyed by domain id (one username, one partition)."""

    TOPIC: ClassVar[str] = topics.SMTP_CREDENTIALS
    credential_id: UUID
    account_id: UUID
    domain_id: UUID
    username: str = Field(min_length=3, max_length=320)

    def stream_id(self) -> UUID:
        return self.credential_id

    def partition_key(self) -> UUID:
        return self.domain_id


class CredentialCreated(_CredentialEvent):
    EVENT_TYPE: ClassVar[str] = "CredentialCreated"
    # v1 had no hash_scheme, v2 no secret_id; see upcasters.
    SCHEMA_VERSION: ClassVar[int] = 3
    domain: str
    secret_hash: str = Field(pattern=SECRET_HASH_PATTERN)
    hash_scheme: Literal["sha256"] = "sha256"
    created_at: AwareDatetime
    # The id of the credential's first secret. Left out, it is the derived id the 2->3 upcaster gives older
    # events (`initial_secret_id`), so every writer and every replay name that secret the same way.
    secret_id: UUID = Field(default_factory=lambda data: initial_secret_id(data["credential_id"]))


class CredentialDeactivated(_CredentialEvent):
    EVENT_TYPE: ClassVar[str] = "CredentialDeactivated"
    deactivated_at: AwareDatetime


class CredentialSecretRotated(_CredentialEvent):
    """A new secret (`secret_id`) became the newest; the previous one stays valid until
    `previous_secret_expires_at` (at or before `rotated_at`: grace 0, refused from the rotation on)."""

    EVENT_TYPE: ClassVar[str] = "CredentialSecretRotated"
    secret_id: UUID
    secret_hash: str = Field(pattern=SECRET_HASH_PATTERN)
    hash_scheme: Literal["sha256"] = "sha256"
    previous_secret_id: UUID
    previous_secret_expires_at: AwareDatetime
    rotated_at: AwareDatetime


class CredentialSecretRevoked(_CredentialEvent):
    """A previous secret's grace period ended early (DELETE .../secrets/{id}): refused from `revoked_at` on."""

    EVENT_TYPE: ClassVar[str] = "CredentialSecretRevoked"
    secret_id: UUID
    revoked_at: AwareDatetime


class CredentialSuspended(_CredentialEvent):
    """Reversible: AUTH still succeeds, MAIL is refused with 451 4.7.1 until `CredentialResumed`."""

    EVENT_TYPE: ClassVar[str] = "CredentialSuspended"
    reason: str | None = Field(default=None, max_length=200)
    suspended_at: AwareDatetime


class CredentialResumed(_CredentialEvent):
    EVENT_TYPE: ClassVar[str] = "CredentialResumed"
    resumed_at: AwareDatetime


class CredentialLimits(BaseModel):
    """Per-credential sending limits (None: no per-credential limit; the plan's quota still applies)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    messages_per_minute: int | None = Field(default=None, ge=1)
    messages_per_day: int | None = Field(default=None, ge=1)


class CredentialRestrictionsChanged(_CredentialEvent):
    """The FULL new restrictions (not a patch): `allowed_cidrs` as normalised network strings ([] = any address),
    `expires_at` (None = never), `limits`."""

    EVENT_TYPE: ClassVar[str] = "CredentialRestrictionsChanged"
    allowed_cidrs: list[str] = Field(default_factory=list)
    expires_at: AwareDatetime | None = None
    limits: CredentialLimits = Field(default_factory=CredentialLimits)
    changed_at: AwareDatetime


class _WebhookEvent(EventData):
    """Webhook endpoint lifecycle (issue 17): on the accounts topic, keyed by account id, in the endpoint's stream.
    No secret in any of them: the signing secret lives encrypted in the API's tables only."""

    TOPIC: ClassVar[str] = topics.ACCOUNTS
    account_id: UUID
    webhook_id: UUID

    def stream_id(self) -> UUID:
        return self.webhook_id

    def partition_key(self) -> UUID:
        return self.account_id


class WebhookEndpointCreated(_WebhookEvent):
    EVENT_TYPE: ClassVar[str] = "WebhookEndpointCreated"
    url: str = Field(min_length=1, max_length=2048)
    events: list[str] = Field(min_length=1, max_length=64)


class WebhookSecretRotated(_WebhookEvent):
    EVENT_TYPE: ClassVar[str] = "WebhookSecretRotated"


class WebhookEndpointDeleted(_WebhookEvent):
    EVENT_TYPE: ClassVar[str] = "WebhookEndpointDeleted"


class WebhookEndpointDisabled(_WebhookEvent):
    """Deliveries kept failing for about 3 days (or an operator disabled it): `reason` is short, never a secret."""

    EVENT_TYPE: ClassVar[str] = "WebhookEndpointDisabled"
    reason: str = Field(max_length=500)


EVENT_TYPES: dict[str, type[EventData]] = {
    cls.EVENT_TYPE: cls
    for cls in (
        AccountCreated,
        ApiKeyIssued,
        ApiKeyRevoked,
        DomainRegistered,
        DomainVerified,
        DomainVerificationFailed,
        DomainReleased,
        CredentialCreated,
        CredentialDeactivated,
        CredentialSecretRotated,
        CredentialSecretRevoked,
        CredentialSuspended,
        CredentialResumed,
        CredentialRestrictionsChanged,
        WebhookEndpointCreated,
        WebhookSecretRotated,
        WebhookEndpointDeleted,
        WebhookEndpointDisabled,
    )
}

"""Request and response models of the REST API. Response models are explicit, so no secret can slip into a list."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import Body
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    field_validator,
)
from taifa_events import rfc3339

from taifa_api.domain.lifecycle import DEFAULT_GRACE_SECONDS, MAX_CIDRS, MAX_GRACE_SECONDS, MAX_REASON_LENGTH
from taifa_api.domain.names import normalise_domain_name
from taifa_api.domain.usage import RFC3339_PATTERN, utc_in_range

_RFC3339 = re.compile(RFC3339_PATTERN, re.ASCII)

Timestamp = Annotated[datetime, PlainSerializer(rfc3339, return_type=str, when_used="json")]


def _rfc3339_text(value: object) -> object:
    """A time in a request body as the contract writes it: RFC 3339 text with an offset. pydantic alone would also
    read a JSON number or a numeric string as Unix seconds, and a date without a time."""
    if value is not None and not (isinstance(value, str) and _RFC3339.fullmatch(value)):
        raise ValueError("an RFC 3339 date-time with an offset, e.g. 2027-01-01T00:00:00Z")
    return value


def _in_range(value: datetime | None) -> datetime | None:
    """Between 1970 and 9000 in UTC, as the usage queries: a time near year 1 or 9999 has no UTC value to store."""
    if value is not None and utc_in_range(value) is None:
        raise ValueError("a date-time between 1970 and 9000")
    return value


Rfc3339In = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_in_range)]


class CredentialCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain_id: UUID


class DomainCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "example.com"}]})

    name: str = Field(
        min_length=3,
        max_length=1024,
        description="Domain name (at least two labels); Unicode names are converted to IDNA A-labels.",
    )

    @field_validator("name")
    @classmethod
    def _normalised(cls, value: str) -> str:
        return normalise_domain_name(value)


class SmtpSettingsOut(BaseModel):
    host: str
    port: int
    encryption: str


class LimitsOut(BaseModel):
    messages_per_minute: int | None
    messages_per_day: int | None


class SecretOut(BaseModel):
    """A valid secret (never its hash): the newest has no `expires_at`; a previous one works until it."""

    id: UUID
    created_at: Timestamp
    expires_at: Timestamp | None
    last_used_at: Timestamp | None


class _CredentialFields(BaseModel):
    """What every credential body carries (docs/api.md, "The credential resource")."""

    id: UUID
    domain_id: UUID
    domain: str
    username: str
    is_active: bool = Field(description="False only once deactivated (a suspended credential is active).")
    created_at: Timestamp
    status: Literal["active", "suspended", "deactivated"]
    suspended_at: Timestamp | None
    suspension_reason: str | None
    expires_at: Timestamp | None
    allowed_cidrs: list[str]
    limits: LimitsOut
    secrets: list[SecretOut] = Field(description="The valid secrets, newest first (at most two).")
    last_used_at: Timestamp | None
    last_used_ip: str | None
    smtp: SmtpSettingsOut


class CredentialOut(_CredentialFields):
    deactivated_at: Timestamp | None


class CredentialCreatedOut(_CredentialFields):
    """The creation's body: the only response besides a rotation's that carries a password."""

    password: str


class PreviousSecretOut(BaseModel):
    id: UUID
    expires_at: Timestamp


class CredentialRotatedOut(CredentialOut):
    """The rotation's body: the new password (shown only here) and when the previous one stops working."""

    password: str
    previous_secret: PreviousSecretOut


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_period_seconds: StrictInt = Field(  # strict: `true` is not a number of seconds
        DEFAULT_GRACE_SECONDS,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="How long the previous password keeps working (0: refused from the rotation on).",
    )


class NoParametersIn(BaseModel):
    """The body of a command that takes no parameters: none at all or `{}`; any field is refused (`422`), never
    silently ignored."""

    model_config = ConfigDict(extra="forbid")


NoParameters = Annotated[NoParametersIn | None, Body(description="No parameters: leave the body out or send `{}`.")]


class SuspendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(
        None,
        max_length=MAX_REASON_LENGTH,
        pattern=r"^[^\x00-\x1f\x7f-\x9f]*$",  # no control characters: it is shown in consoles and logs
        description="Shown in the credential's body; no control characters.",
    )


_LIMIT = Field(
    None, ge=1, le=2**31 - 1, strict=True, description="At most the plan's daily quota; null: no limit of its own."
)


class LimitsIn(BaseModel):
    """A merge patch: a key left out keeps its value, `null` clears it."""

    model_config = ConfigDict(extra="forbid")

    messages_per_minute: int | None = _LIMIT
    messages_per_day: int | None = _LIMIT


class CredentialPatchIn(BaseModel):
    """Only the fields present change; `[]` / `null` clears."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"allowed_cidrs": ["203.0.113.0/24", "2001:db8::/48"]}]},
    )

    allowed_cidrs: list[Annotated[str, Field(max_length=64)]] | None = Field(
        None, max_length=MAX_CIDRS, description="Networks allowed to log in (host bits clear); [] = any address."
    )
    expires_at: Rfc3339In | None = Field(None, description="From then on the credential is refused; in the future.")
    limits: LimitsIn | None = None


class VerificationOut(BaseModel):
    type: Literal["TXT"]
    name: str
    value: str


class DomainOut(BaseModel):
    id: UUID
    name: str
    status: Literal["pending", "verified"]
    status_reason: str | None
    verification: VerificationOut
    created_at: Timestamp
    verified_at: Timestamp | None


class StatusOut(BaseModel):
    status: str
    checks: dict[str, str] = {}


class UsageBucketOut(BaseModel):
    """One hour or UTC day (`start`, aligned), its totals: zeros when nothing happened."""

    start: Timestamp
    messages: int = Field(description="Messages accepted (250 after the upstream accepted them).")
    recipients: int = Field(description="Recipients of the accepted messages.")
    bytes: int = Field(description="Size of the accepted messages.")
    auth_successes: int
    auth_failures: int = Field(description="Failed logins with this credential's username.")
    refused: dict[str, int] = Field(description="Refusals by reason (policy, limits, quota, suspended, ...).")


class CredentialUsageOut(BaseModel):
    credential_id: UUID
    granularity: Literal["hour", "day"]
    series: list[UsageBucketOut] = Field(description="Every bucket of the range, oldest first.")


class CredentialSeriesOut(BaseModel):
    credential_id: UUID
    series: list[UsageBucketOut]


class AccountUsageOut(BaseModel):
    account_id: UUID
    granularity: Literal["hour", "day"]
    series: list[UsageBucketOut] = Field(description="The account's totals: every bucket of the range, oldest first.")
    by_credential: list[CredentialSeriesOut] = Field(
        description="The same per credential, for each credential with usage in the range."
    )

"""Request and response models of the REST API. Response models are explicit, so no secret can slip into a list."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator
from taifa_events import rfc3339

from taifa_api.domain.names import normalise_domain_name

Timestamp = Annotated[datetime, PlainSerializer(rfc3339, return_type=str, when_used="json")]


class CredentialCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain_id: UUID


class DomainCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "example.com"}]})

    name: str = Field(
        min_length=3,
        max_length=1024,
        # A necessary condition only: the full IDNA grammar is checked by the validator below.
        pattern=r"^[^\s@/]+\.[^\s@/]+$",
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


class CredentialOut(BaseModel):
    id: UUID
    domain_id: UUID
    domain: str
    username: str
    is_active: bool
    created_at: Timestamp
    deactivated_at: Timestamp | None
    smtp: SmtpSettingsOut


class CredentialCreatedOut(BaseModel):
    """The only response that ever carries the password."""

    id: UUID
    domain_id: UUID
    domain: str
    username: str
    password: str
    is_active: bool
    created_at: Timestamp
    smtp: SmtpSettingsOut


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

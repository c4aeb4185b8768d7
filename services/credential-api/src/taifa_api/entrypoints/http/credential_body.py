"""The one way a credential body is shaped (docs/api.md, "The credential resource"), from the read model's row
(GET, list) or from the state a command left on the write side (create, rotate, suspend, resume, PATCH)."""

from __future__ import annotations

import json
from typing import Any

from taifa_api.domain.credentials import ACTIVE, DEACTIVATED
from taifa_api.domain.models import CredentialRecord, SecretRecord
from taifa_api.entrypoints.http.schemas import CredentialOut, LimitsOut, SecretOut, SmtpSettingsOut


def domain_of(username: str) -> str:
    """The domain name a username ends with (`<8 characters of the account id>@<domain>`)."""
    return username.partition("@")[2]


def _cidrs(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):  # a jsonb column without a codec
        value = json.loads(value)
    return [str(item) for item in value]


def from_read_model(row: dict[str, Any], smtp: SmtpSettingsOut) -> CredentialOut:
    """A read-model row with its `secrets` (adapters/read_models.py) as the credential body."""
    status = row.get("status") or (ACTIVE if row["is_active"] else DEACTIVATED)
    return CredentialOut(
        id=row["credential_id"],
        domain_id=row["domain_id"],
        domain=row["domain"],
        username=row["username"],
        is_active=row["is_active"],
        created_at=row["created_at"],
        deactivated_at=row["deactivated_at"],
        status=status,
        suspended_at=row.get("suspended_at"),
        suspension_reason=row.get("suspension_reason"),
        expires_at=row.get("expires_at"),
        allowed_cidrs=_cidrs(row.get("allowed_cidrs")),
        limits=LimitsOut(
            messages_per_minute=row.get("limit_messages_per_minute"),
            messages_per_day=row.get("limit_messages_per_day"),
        ),
        secrets=[
            SecretOut(
                id=secret["secret_id"],
                created_at=secret["created_at"],
                expires_at=secret["expires_at"],
                last_used_at=secret.get("last_used_at"),
            )
            for secret in row.get("secrets", [])
            if status != DEACTIVATED  # none works any more: a deactivated credential lists no secret
        ],
        last_used_at=row.get("last_used_at"),
        last_used_ip=str(row["last_used_ip"]) if row.get("last_used_ip") is not None else None,
        smtp=smtp,
    )


def from_write_side(
    record: CredentialRecord,
    secrets: tuple[SecretRecord, ...],
    smtp: SmtpSettingsOut,
    usage: dict[str, Any] | None = None,
) -> CredentialOut:
    """What a command left (the body of its response), with the usage the read model knows (`last_used_*`:
    the relay's, not the command's) when it has the credential."""
    usage = usage or {}
    used_secrets = {secret["secret_id"]: secret for secret in usage.get("secrets", [])}
    return CredentialOut(
        id=record.credential_id,
        domain_id=record.domain_id,
        domain=domain_of(record.username),
        username=record.username,
        is_active=record.is_active,
        created_at=record.created_at,
        deactivated_at=record.deactivated_at,
        status=record.status,  # one of the three: the write side's CHECK constraint
        suspended_at=record.suspended_at,
        suspension_reason=record.suspension_reason,
        expires_at=record.expires_at,
        allowed_cidrs=list(record.allowed_cidrs),
        limits=LimitsOut(messages_per_minute=record.messages_per_minute, messages_per_day=record.messages_per_day),
        secrets=[
            SecretOut(
                id=secret.secret_id,
                created_at=secret.created_at,
                expires_at=secret.expires_at,
                last_used_at=used_secrets.get(secret.secret_id, {}).get("last_used_at"),
            )
            for secret in secrets
            if record.status != DEACTIVATED
        ],
        last_used_at=usage.get("last_used_at"),
        last_used_ip=str(usage["last_used_ip"]) if usage.get("last_used_ip") is not None else None,
        smtp=smtp,
    )

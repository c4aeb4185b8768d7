"""The credential lifecycle after creation (docs/api.md, "Credential lifecycle"): rotation with a grace period,
ending a previous secret's grace early, suspend and resume, restrictions (CIDR allowlist, expiry, limits).

Each function takes the state loaded under the credential's row lock and returns the new state with its event,
or no event when nothing changes (repeats are idempotent). A deactivated credential refuses every change.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID, uuid4

from taifa_events import hash_secret
from taifa_events.auth_cache import unmapped_network
from taifa_events.events import (
    CredentialLimits,
    CredentialRestrictionsChanged,
    CredentialResumed,
    CredentialSecretRevoked,
    CredentialSecretRotated,
    CredentialSuspended,
)

from taifa_api.domain.credentials import ACTIVE, SUSPENDED, new_password
from taifa_api.domain.errors import (
    CredentialInactive,
    InvalidRequest,
    LastSecret,
    NotFound,
    RotationInProgress,
)
from taifa_api.domain.models import CredentialRecord, RotatedCredential, SecretRecord

DEFAULT_GRACE_SECONDS: Final = 86400
MAX_GRACE_SECONDS: Final = 604800  # a week
MAX_REASON_LENGTH: Final = 200
MAX_CIDRS: Final = 64


def _require_live(credential: CredentialRecord) -> None:
    if not credential.is_active:
        raise CredentialInactive()


def secret_is_valid(secret: SecretRecord, now: datetime) -> bool:
    """Not revoked and not past its grace period (the newest secret has no expiry)."""
    return secret.revoked_at is None and (secret.expires_at is None or secret.expires_at > now)


def _age(secret: SecretRecord) -> tuple[bool, datetime]:
    # The newest secret is the one without an expiry (a rotation gives the current one its grace period's end),
    # so two secrets made within one clock tick are still told apart; then newest created first.
    return (secret.expires_at is None and secret.revoked_at is None, secret.created_at)


def valid_secrets(secrets: Sequence[SecretRecord], now: datetime) -> tuple[SecretRecord, ...]:
    """The secrets a login may use now, newest first: what a credential body lists."""
    return tuple(s for s in sorted(secrets, key=_age, reverse=True) if secret_is_valid(s, now))


def _newest(secrets: Sequence[SecretRecord]) -> SecretRecord:
    return max(secrets, key=_age)


# --- rotation --------------------------------------------------------------------------------------------


def rotate(
    credential: CredentialRecord, secrets: Sequence[SecretRecord], grace_seconds: int, now: datetime
) -> tuple[RotatedCredential, SecretRecord, str, CredentialSecretRotated]:
    """A new newest secret; the current one stays valid for `grace_seconds` (0: refused from now on).

    Returns the rotation (with the plaintext password), the new secret record, its hash and the event. Refused
    while an older secret is still in its grace period (at most two valid secrets).
    """
    _require_live(credential)
    if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
        raise InvalidRequest(f"grace_period_seconds: must be between 0 and {MAX_GRACE_SECONDS}")
    current = _newest(secrets)
    if any(s.secret_id != current.secret_id and secret_is_valid(s, now) for s in secrets):
        raise RotationInProgress()
    password = new_password()
    secret_hash = hash_secret(password)
    new_secret = SecretRecord(secret_id=uuid4(), credential_id=credential.credential_id, created_at=now)
    previous = replace(current, expires_at=whole_second(now + timedelta(seconds=grace_seconds)))
    event = CredentialSecretRotated(
        **credential.event_subject(),
        secret_id=new_secret.secret_id,
        secret_hash=secret_hash,
        previous_secret_id=previous.secret_id,
        previous_secret_expires_at=previous.expires_at,
        rotated_at=now,
    )
    others = [s for s in secrets if s.secret_id != current.secret_id]
    rotated = RotatedCredential(
        record=credential,
        secrets=valid_secrets([new_secret, previous, *others], now),
        password=password,
        previous=previous,
    )
    return rotated, new_secret, secret_hash, event


def revoke_secret(
    credential: CredentialRecord, secrets: Sequence[SecretRecord], secret_id: UUID, now: datetime
) -> tuple[SecretRecord, CredentialSecretRevoked | None]:
    """End a previous secret's grace period now. The newest secret cannot be revoked (`LastSecret`); a previous
    secret that is already expired or revoked stays as it is, with no event (the request is idempotent)."""
    _require_live(credential)
    found = next((s for s in secrets if s.secret_id == secret_id), None)
    if found is None:
        raise NotFound()
    if found.secret_id == _newest(secrets).secret_id:
        raise LastSecret()
    if not secret_is_valid(found, now):
        return found, None
    event = CredentialSecretRevoked(
        **credential.event_subject(),
        secret_id=secret_id,
        revoked_at=now,
    )
    return replace(found, revoked_at=now), event


# --- suspend and resume ----------------------------------------------------------------------------------


def suspend(
    credential: CredentialRecord, reason: str | None, now: datetime
) -> tuple[CredentialRecord, CredentialSuspended | None]:
    """Suspended (AUTH works, MAIL gets 451); an already suspended credential keeps its first reason and time."""
    _require_live(credential)
    if reason is not None and len(reason) > MAX_REASON_LENGTH:
        raise InvalidRequest(f"reason: at most {MAX_REASON_LENGTH} characters")
    if credential.status == SUSPENDED:
        return credential, None
    event = CredentialSuspended(
        **credential.event_subject(),
        reason=reason,
        suspended_at=now,
    )
    return replace(credential, status=SUSPENDED, suspended_at=now, suspension_reason=reason), event


def resume(credential: CredentialRecord, now: datetime) -> tuple[CredentialRecord, CredentialResumed | None]:
    """Active again; an active credential stays as it is, with no event."""
    _require_live(credential)
    if credential.status == ACTIVE:
        return credential, None
    event = CredentialResumed(
        **credential.event_subject(),
        resumed_at=now,
    )
    return replace(credential, status=ACTIVE, suspended_at=None, suspension_reason=None), event


# --- restrictions ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestrictionsPatch:
    """What a PATCH sets: a field left `None` here is not in the request (kept); a present value replaces it.
    `clear_*` flags say the request asked for `[]`/`null` explicitly."""

    allowed_cidrs: list[str] | None = None
    expires_at: datetime | None = None
    clear_expires_at: bool = False
    messages_per_minute: int | None = None
    clear_messages_per_minute: bool = False
    messages_per_day: int | None = None
    clear_messages_per_day: bool = False


def normalise_cidrs(raw: Sequence[str]) -> tuple[str, ...]:
    """Network strings in canonical form, duplicates dropped, order kept. A host address is its /32 or /128;
    an IPv4-mapped IPv6 network (`::ffff:203.0.113.0/120`) is its IPv4 network (the relay compares a mapped client
    address as IPv4); host bits set (`203.0.113.7/24`), a prefix that is not a number (a netmask), a zone id
    (`fe80::1%eth0`), an unparsable value or more than 64 entries is `InvalidRequest`."""
    if len(raw) > MAX_CIDRS:
        raise InvalidRequest(f"allowed_cidrs: at most {MAX_CIDRS} networks")
    networks: list[str] = []
    for index, value in enumerate(raw):
        text = value.strip()
        _, slash, prefix = text.partition("/")
        try:
            if "%" in text or (slash and not (prefix.isascii() and prefix.isdigit())):
                raise ValueError(text)
            network: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.ip_network(text, strict=True)
        except ValueError:
            raise InvalidRequest(f"allowed_cidrs[{index}]: not a network in CIDR notation, or host bits set") from None
        network = unmapped_network(network)
        if str(network) not in networks:
            networks.append(str(network))
    return tuple(networks)


def whole_second(moment: datetime) -> datetime:
    """`moment` cut to its whole second. Expiries are whole seconds, as the relay's cache entries hold them (unix
    seconds): the API's `expires_at` and the relay's refusal then fall on the same instant (a fraction cut by the
    projector alone refused a password up to a second before the API said). Cut, never rounded up: a grace period
    of 0 retires the previous secret with the 201, and no expiry ends later than asked."""
    return moment.replace(microsecond=0)


def change_restrictions(
    credential: CredentialRecord, patch: RestrictionsPatch, daily_quota: int, now: datetime
) -> tuple[CredentialRecord, CredentialRestrictionsChanged | None]:
    """Apply a PATCH: validate each given value, then the FULL new restrictions go in the event. No change at
    all gives no event. `daily_quota` is the account plan's daily recipients quota: no limit may exceed it."""
    _require_live(credential)
    cidrs = credential.allowed_cidrs if patch.allowed_cidrs is None else normalise_cidrs(patch.allowed_cidrs)
    asked = None if patch.expires_at is None else whole_second(patch.expires_at)
    expires_at = None if patch.clear_expires_at else (asked or credential.expires_at)
    if asked is not None and asked <= now:
        raise InvalidRequest("expires_at: must be in the future")
    per_minute = _limit(
        "messages_per_minute",
        credential.messages_per_minute,
        patch.messages_per_minute,
        patch.clear_messages_per_minute,
        daily_quota,
    )
    per_day = _limit(
        "messages_per_day",
        credential.messages_per_day,
        patch.messages_per_day,
        patch.clear_messages_per_day,
        daily_quota,
    )
    changed = replace(
        credential,
        allowed_cidrs=cidrs,
        expires_at=expires_at,
        messages_per_minute=per_minute,
        messages_per_day=per_day,
    )
    if changed == credential:
        return credential, None
    event = CredentialRestrictionsChanged(
        **credential.event_subject(),
        allowed_cidrs=list(cidrs),
        expires_at=expires_at,
        limits=CredentialLimits(messages_per_minute=per_minute, messages_per_day=per_day),
        changed_at=now,
    )
    return changed, event


def _limit(name: str, current: int | None, given: int | None, clear: bool, daily_quota: int) -> int | None:
    if clear:
        return None
    if given is None:
        return current
    if not 1 <= given <= daily_quota:
        raise InvalidRequest(f"limits.{name}: must be between 1 and the plan's daily quota ({daily_quota})")
    return given

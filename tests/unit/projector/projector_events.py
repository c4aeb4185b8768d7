"""Builders of projector test events (shared by the projector's unit and integration tests)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from taifa_events import (
    CredentialCreated,
    CredentialDeactivated,
    CredentialLimits,
    CredentialRestrictionsChanged,
    CredentialResumed,
    CredentialSecretRevoked,
    CredentialSecretRotated,
    CredentialSuspended,
    DomainRegistered,
    DomainReleased,
    DomainVerificationFailed,
    DomainVerified,
    Envelope,
    hash_secret,
    make_envelope,
)

BASE_TIME = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return BASE_TIME + timedelta(seconds=seconds)


class Domain:
    """One account's domain, and the credential events for its username."""

    def __init__(self, name: str | None = None) -> None:
        self.account_id = uuid.uuid4()
        self.domain_id = uuid.uuid4()
        self.name = name or f"d{uuid.uuid4().hex[:10]}.example"
        self.username = f"{str(self.account_id)[:8]}@{self.name}"

    def registered(self, position: int) -> Envelope[Any]:
        data = DomainRegistered(
            domain_id=self.domain_id,
            account_id=self.account_id,
            name=self.name,
            verification_name=f"_taifa.{self.name}",
            verification_value=f"taifa-verification={uuid.uuid4().hex}",
            created_at=at(position),
        )
        return make_envelope(data, stream_version=1, position=position, correlation_id="test")

    def verified(self, position: int, version: int = 2) -> Envelope[Any]:
        data = DomainVerified(
            domain_id=self.domain_id, account_id=self.account_id, name=self.name, verified_at=at(position)
        )
        return make_envelope(data, stream_version=version, position=position, correlation_id="test")

    def verification_failed(self, position: int, version: int = 2) -> Envelope[Any]:
        data = DomainVerificationFailed(
            domain_id=self.domain_id, account_id=self.account_id, reason="TXT record not found", checked_at=at(position)
        )
        return make_envelope(data, stream_version=version, position=position, correlation_id="test")

    def released(self, position: int, version: int = 3, reason: str = "owner") -> Envelope[Any]:
        data = DomainReleased(
            domain_id=self.domain_id, account_id=self.account_id, name=self.name, released_at=at(position),
            reason=reason,  # type: ignore[arg-type]
        )  # fmt: skip
        return make_envelope(data, stream_version=version, position=position, correlation_id="test")

    def created(self, position: int, credential_id: uuid.UUID | None = None) -> Envelope[Any]:
        data = CredentialCreated(
            credential_id=credential_id or uuid.uuid4(),
            account_id=self.account_id,
            domain_id=self.domain_id,
            domain=self.name,
            username=self.username,
            secret_hash=hash_secret(uuid.uuid4().hex),
            created_at=at(position),
        )
        return make_envelope(data, stream_version=1, position=position, correlation_id="test")

    def deactivated(self, created: Envelope[Any], position: int) -> Envelope[Any]:
        data = CredentialDeactivated(
            credential_id=created.data.credential_id,
            account_id=self.account_id,
            domain_id=self.domain_id,
            username=self.username,
            deactivated_at=at(position),
        )
        return make_envelope(data, stream_version=2, position=position, correlation_id="test")


def _credential_fields(domain: Domain, created: Envelope[Any]) -> dict[str, Any]:
    return {
        "credential_id": created.data.credential_id, "account_id": domain.account_id,
        "domain_id": domain.domain_id, "username": domain.username,
    }  # fmt: skip


def _credential_event(data: Any, position: int) -> Envelope[Any]:
    return make_envelope(data, stream_version=position, position=position, correlation_id="test")


def rotated(
    d: Domain, created: Envelope[Any], position: int, previous: uuid.UUID, grace: int = 3600,
    secret_id: uuid.UUID | None = None, secret: str | None = None,
) -> Envelope[Any]:  # fmt: skip
    """A rotation at `at(position)` whose previous secret (`previous`) ends `grace` seconds later."""
    data = CredentialSecretRotated(
        **_credential_fields(d, created), secret_id=secret_id or uuid.uuid4(),
        secret_hash=hash_secret(secret or uuid.uuid4().hex), previous_secret_id=previous,
        previous_secret_expires_at=at(position + grace), rotated_at=at(position),
    )  # fmt: skip
    return _credential_event(data, position)


def secret_revoked(d: Domain, created: Envelope[Any], position: int, secret_id: uuid.UUID) -> Envelope[Any]:
    data = CredentialSecretRevoked(**_credential_fields(d, created), secret_id=secret_id, revoked_at=at(position))
    return _credential_event(data, position)


def suspended(d: Domain, created: Envelope[Any], position: int, reason: str | None = "abuse") -> Envelope[Any]:
    data = CredentialSuspended(**_credential_fields(d, created), reason=reason, suspended_at=at(position))
    return _credential_event(data, position)


def resumed(d: Domain, created: Envelope[Any], position: int) -> Envelope[Any]:
    return _credential_event(CredentialResumed(**_credential_fields(d, created), resumed_at=at(position)), position)


def restricted(
    d: Domain, created: Envelope[Any], position: int, cidrs: list[str] | None = None, expires_in: int | None = None,
    per_minute: int | None = None, per_day: int | None = None,
) -> Envelope[Any]:  # fmt: skip
    data = CredentialRestrictionsChanged(
        **_credential_fields(d, created), allowed_cidrs=cidrs or [],
        expires_at=None if expires_in is None else at(position + expires_in),
        limits=CredentialLimits(messages_per_minute=per_minute, messages_per_day=per_day), changed_at=at(position),
    )  # fmt: skip
    return _credential_event(data, position)


def scenario(total: int, seed: int = 1, active_domains: int = 50) -> list[Envelope[Any]]:
    """A plausible event log of `total` events in position order: domains registered, verified
    (sometimes after a failed check), credentials created, deactivated and created again."""
    rng = random.Random(seed)
    events: list[Envelope[Any]] = []
    pool: list[dict[str, Any]] = []
    while len(events) < total:
        if len(pool) < active_domains or rng.random() < 0.05:
            d = Domain()
            d.account_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            d.domain_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            d.username = f"{str(d.account_id)[:8]}@{d.name}"
            pool.append({"domain": d, "version": 1, "verified": False, "active": None})
            events.append(d.registered(len(events) + 1))
            continue
        state = rng.choice(pool)
        d = state["domain"]
        position = len(events) + 1
        if not state["verified"]:
            state["version"] += 1
            if rng.random() < 0.3:
                events.append(d.verification_failed(position, version=state["version"]))
            else:
                events.append(d.verified(position, version=state["version"]))
                state["verified"] = True
        elif state["active"] is None:
            created = d.created(position, credential_id=uuid.UUID(int=rng.getrandbits(128), version=4))
            state["active"] = created
            events.append(created)
        else:
            events.append(d.deactivated(state["active"], position))
            state["active"] = None
    return events

"""An SMTP credential's read-model row, its secrets, and the auth-cache entry they stand for.

The row holds the whole lifecycle state (status, restrictions, secrets), so the auth entry of a username is a
function of its credential's row: the live consumer, a replay from Kafka and one from the event store fold the
same events through the same rules and therefore write the same entries. Rules (docs/interfaces.md):

- every rule is conditional on position: an event at or below the row's position changes nothing;
- an event for a credential whose creation has not been seen returns None (the caller parks it);
- a deactivation is final: nothing after it changes the row (nor its position);
- a rotation puts the new secret first and gives the previous one its expiry (grace 0: an expiry at or before
  the rotation); a revocation ends a secret at once; secrets are kept (history) in the read model;
- the cache entry holds the newest two secrets that are not revoked and whose grace did not end by the newest
  one's creation (the relay compares their expiry with its clock: a grace period needs no event to end), the
  status, the credential's expiry, cidrs and limits.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

from taifa_events import (
    CredentialCreated,
    CredentialDeactivated,
    CredentialRestrictionsChanged,
    CredentialResumed,
    CredentialSecretRevoked,
    CredentialSecretRotated,
    CredentialSuspended,
    Envelope,
    EventData,
    initial_secret_id,
)
from taifa_events.auth_cache import CACHE_FORMAT, MAX_CACHED_SECRETS
from taifa_events.secret_hash import HASH_SCHEME

ACTIVE = "active"
SUSPENDED = "suspended"
DEACTIVATED = "deactivated"

# A tombstone keeps no secret: a revoked hash is useless to the relay, so it is not kept.
TOMBSTONE_HASH = "0" * 64
NO_CIDRS_JSON = "[]"
NO_LIMITS_JSON = '{"messages_per_minute":null,"messages_per_day":null}'
DEFAULT_PLAN = "free"  # taifa_events.usage.DEFAULT_PLAN: an entry whose account's plan is not known yet
assert TOMBSTONE_HASH.isalnum() and HASH_SCHEME.isascii() and HASH_SCHEME.isalnum()  # no JSON escaping needed
_TOMBSTONE_SECRET_TAIL = f'"hash":"{TOMBSTONE_HASH}","scheme":"{HASH_SCHEME}","expires_at":null'
assert CACHE_FORMAT == 2  # the fields below are format 2's


class SecretRow(NamedTuple):
    """One row of `rm_credential_secrets` (the hash stays on the projector's side: the API never reads it)."""

    credential_id: UUID
    secret_id: UUID
    secret_hash: str
    hash_scheme: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    position: int


class CredentialRow(NamedTuple):
    """One row of `rm_smtp_credentials` (columns in this order, then `secrets`, which has a table of its own)."""

    credential_id: UUID
    account_id: UUID
    domain_id: UUID
    domain: str
    username: str
    is_active: bool
    created_at: datetime
    deactivated_at: datetime | None
    position: int
    # Migration 0005 (issue 15), appended in this order to the table and to its row type.
    status: str = ACTIVE
    suspended_at: datetime | None = None
    suspension_reason: str | None = None
    expires_at: datetime | None = None
    allowed_cidrs: tuple[str, ...] = ()
    limit_messages_per_minute: int | None = None
    limit_messages_per_day: int | None = None
    # Newest first. Not a column: rm_credential_secrets.
    secrets: tuple[SecretRow, ...] = ()


class AuthEntry(NamedTuple):
    """One username's auth-cache entry (mirrored in PostgreSQL so the cache can be rebuilt); the last five fields
    are the cache's own text (format 2), so the mirror and Redis hold the same strings."""

    username: str
    credential_id: UUID
    account_id: UUID
    domain_id: UUID
    domain: str
    secret_hash: str
    hash_scheme: str
    active: bool
    position: int
    status: str = ACTIVE
    secrets: str = "[]"
    expires_at: int | None = None
    allowed_cidrs: str = NO_CIDRS_JSON
    limits: str = NO_LIMITS_JSON
    plan: str = DEFAULT_PLAN  # the account's plan (its daily quota at the relay) once known


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _secrets_json(secrets: Sequence[tuple[UUID, str, str, int | None]]) -> str:
    """`_compact` of the entry's secrets ({id, hash, scheme, expires_at} each), written straight from a template:
    a json.dumps per entry cost more than the rest of the entry. A uuid, a hex hash, an alphanumeric scheme and an
    integer need no escaping, so the text is the same; anything else is left to json.dumps (unit-tested equal)."""
    parts = []
    for secret_id, secret_hash, scheme, expires_at in secrets:
        if not (secret_hash.isascii() and secret_hash.isalnum() and scheme.isascii() and scheme.isalnum()):
            return _compact([{"id": str(i), "hash": h, "scheme": c, "expires_at": e} for i, h, c, e in secrets])
        parts.append(
            f'{{"id":"{secret_id}","hash":"{secret_hash}","scheme":"{scheme}",'
            f'"expires_at":{"null" if expires_at is None else int(expires_at)}}}'
        )
    return f"[{','.join(parts)}]"


def unix_seconds(moment: datetime | None) -> int | None:
    """Whole seconds, rounded down: an expiry is enforced up to a second early, never late."""
    return None if moment is None else math.floor(moment.timestamp())


def newest_first(secrets: Iterable[SecretRow]) -> tuple[SecretRow, ...]:
    """The one order of a credential's secrets, live and when read back: newest creation first (ties, which the
    API's clock does not make, by id)."""
    return tuple(sorted(secrets, key=lambda s: (s.created_at, s.secret_id), reverse=True))


# --- rows ----------------------------------------------------------------------------------------


def credential_row_from_created(event: Envelope[EventData]) -> CredentialRow:
    data = event.data
    assert type(data) is CredentialCreated
    secret = SecretRow(
        data.credential_id, data.secret_id, data.secret_hash, data.hash_scheme, data.created_at, None, None,
        event.position,
    )  # fmt: skip
    return CredentialRow(
        data.credential_id, data.account_id, data.domain_id, data.domain, data.username, True, data.created_at,
        None, event.position, ACTIVE, None, None, None, (), None, None, (secret,),
    )  # fmt: skip


def _rotated(row: CredentialRow, data: CredentialSecretRotated, position: int) -> CredentialRow:
    older = []
    for secret in row.secrets:
        if secret.secret_id == data.secret_id:
            return row._replace(position=position)  # already there (a replayed rotation): nothing new
        if secret.secret_id == data.previous_secret_id and secret.revoked_at is None:
            ends = data.previous_secret_expires_at
            if secret.expires_at is None or ends < secret.expires_at:
                secret = secret._replace(expires_at=ends, position=position)
        older.append(secret)
    new = SecretRow(
        row.credential_id, data.secret_id, data.secret_hash, data.hash_scheme, data.rotated_at, None, None, position
    )
    return row._replace(secrets=newest_first((new, *older)), position=position)


def _revoked(row: CredentialRow, data: CredentialSecretRevoked, position: int) -> CredentialRow:
    secrets = tuple(
        s._replace(revoked_at=data.revoked_at, position=position)
        if s.secret_id == data.secret_id and s.revoked_at is None
        else s
        for s in row.secrets
    )
    return row._replace(secrets=secrets, position=position)


def apply_credential_event(row: CredentialRow | None, event: Envelope[EventData]) -> CredentialRow | None:
    """The row after `event`; None while the credential has no row (the event must then be parked)."""
    if row is not None and event.position <= row.position:
        return row
    data = event.data
    kind = type(data)
    if kind is CredentialCreated:
        # A creation never undoes a later state; only an unseen creation makes the row.
        return row if row is not None else credential_row_from_created(event)
    if row is None:
        return None
    if not row.is_active:
        return row  # deactivation is final
    position = event.position
    if kind is CredentialDeactivated:
        assert type(data) is CredentialDeactivated
        # Built field by field: `_replace` costs twice as much, and this runs for half the events.
        return CredentialRow(
            row.credential_id, row.account_id, row.domain_id, row.domain, row.username, False, row.created_at,
            data.deactivated_at, position, DEACTIVATED, *row[10:],
        )  # fmt: skip
    if kind is CredentialSecretRotated:
        assert type(data) is CredentialSecretRotated
        return _rotated(row, data, position)
    if kind is CredentialSecretRevoked:
        assert type(data) is CredentialSecretRevoked
        return _revoked(row, data, position)
    if kind is CredentialSuspended:
        assert type(data) is CredentialSuspended
        return row._replace(
            status=SUSPENDED, suspended_at=data.suspended_at, suspension_reason=data.reason, position=position
        )
    if kind is CredentialResumed:
        return row._replace(status=ACTIVE, suspended_at=None, suspension_reason=None, position=position)
    if kind is CredentialRestrictionsChanged:
        assert type(data) is CredentialRestrictionsChanged
        return row._replace(
            expires_at=data.expires_at,
            allowed_cidrs=tuple(data.allowed_cidrs),
            limit_messages_per_minute=data.limits.messages_per_minute,
            limit_messages_per_day=data.limits.messages_per_day,
            position=position,
        )
    return row


# --- auth entries --------------------------------------------------------------------------------


def tombstone(
    username: str, credential_id: UUID, account_id: UUID, domain_id: UUID, position: int, plan: str = DEFAULT_PLAN
) -> AuthEntry:
    """A deactivated credential's entry: no secret, no restriction; the same whether it comes from the
    deactivation event alone (its creation not seen yet) or from the deactivated row."""
    username = username.lower()
    # `_secrets_json` of the one placeholder secret, written directly (its hash and scheme are the constants).
    secrets = f'[{{"id":"{initial_secret_id(credential_id)}",{_TOMBSTONE_SECRET_TAIL}}}]'
    return AuthEntry(
        username, credential_id, account_id, domain_id, username.rpartition("@")[2], TOMBSTONE_HASH, HASH_SCHEME,
        False, position, DEACTIVATED, secrets, None, NO_CIDRS_JSON, NO_LIMITS_JSON, plan,
    )  # fmt: skip


def _cached_secret(s: SecretRow) -> dict[str, object]:
    return {
        "id": str(s.secret_id),
        "hash": s.secret_hash,
        "scheme": s.hash_scheme,
        "expires_at": unix_seconds(s.expires_at),
    }


def auth_entry_of(row: CredentialRow, plan: str = DEFAULT_PLAN) -> AuthEntry:
    """The cache entry a credential row stands for (format 2), with the account's `plan` (the default until the
    account's plan is known)."""
    if not row.is_active:
        return tombstone(row.username, row.credential_id, row.account_id, row.domain_id, row.position, plan)
    live = [s for s in row.secrets if s.revoked_at is None]
    if len(live) > 1:  # (one secret, the usual case, needs no filter)
        # A secret whose grace ended by the newest secret's creation (grace 0 among them) is over whatever the
        # relay's clock says: left out, so a relay whose clock lags cannot accept it.
        newest_at = live[0].created_at
        live = [live[0], *(s for s in live[1:] if s.expires_at is None or s.expires_at > newest_at)]
    usable = live[:MAX_CACHED_SECRETS]
    if not usable:
        # Every secret revoked (the API never allows it): nothing can log in, fail closed.
        usable = [SecretRow(row.credential_id, initial_secret_id(row.credential_id), TOMBSTONE_HASH, HASH_SCHEME,
                            row.created_at, None, None, row.position)]  # fmt: skip
    secrets = _secrets_json([(s.secret_id, s.secret_hash, s.hash_scheme, unix_seconds(s.expires_at)) for s in usable])
    if row.limit_messages_per_minute is None and row.limit_messages_per_day is None:
        limits = NO_LIMITS_JSON
    else:
        limits = _compact(
            {"messages_per_minute": row.limit_messages_per_minute, "messages_per_day": row.limit_messages_per_day}
        )
    newest = usable[0]
    return AuthEntry(
        row.username.lower(), row.credential_id, row.account_id, row.domain_id, row.domain, newest.secret_hash,
        newest.hash_scheme, True, row.position, row.status, secrets, unix_seconds(row.expires_at),
        _compact(list(row.allowed_cidrs)) if row.allowed_cidrs else NO_CIDRS_JSON, limits, plan,
    )  # fmt: skip


def tombstone_of_event(event: Envelope[EventData]) -> AuthEntry | None:
    """The tombstone a deactivation writes even before its credential's creation is seen (fail closed)."""
    data = event.data
    if type(data) is CredentialDeactivated:
        return tombstone(data.username, data.credential_id, data.account_id, data.domain_id, event.position)
    return None


def tombstone_for(entry: AuthEntry, position: int) -> AuthEntry:
    """The entry revoked at `position` (or at its own, if newer): no secret, inactive."""
    return tombstone(
        entry.username, entry.credential_id, entry.account_id, entry.domain_id, max(entry.position, position)
    )


def latest_positions(events: Iterable[Envelope[EventData]]) -> dict[UUID, int]:
    """The highest position of each credential's events in `events`."""
    highest: dict[UUID, int] = {}
    for event in events:
        credential_id = getattr(event.data, "credential_id", None)
        if isinstance(credential_id, UUID):
            highest[credential_id] = max(highest.get(credential_id, 0), event.position)
    return highest


def revoked_at(position: int | None, own: int, later: int) -> int:
    """Where an undecodable deactivation's tombstone goes: at its position when its value names one (a deactivation
    is final: every event of the credential comes before it); else above the entry's own position and above every
    event of the credential in the batch (`later`), applied after the tombstone is written."""
    return position if position is not None else max(own, later) + 1


def created_before(
    events: Iterable[Envelope[EventData]], domain_id: UUID, position: int | None, highest: Mapping[UUID, int]
) -> list[AuthEntry]:
    """The tombstones of `domain_id`'s credentials created in `events` before `position` (all of them when it is
    unknown; `highest`: `latest_positions(events)`): an undecodable deactivation of the domain revokes them too (fail
    closed), although their creation, in the same batch, is not applied yet."""
    revoked = []
    for event in events:
        data, before = event.data, position is None or event.position < position
        if type(data) is CredentialCreated and data.domain_id == domain_id and before:
            at = revoked_at(position, event.position, highest.get(data.credential_id, 0))
            revoked.append(tombstone(data.username, data.credential_id, data.account_id, domain_id, at))
    return revoked


def newer_entry(current: AuthEntry | None, candidate: AuthEntry) -> AuthEntry:
    """Compare on position: the entry with the higher position wins. At the same position, an entry that learnt
    its account's plan (AccountCreated applied after the credential: another topic) wins over one that has
    not: plans never change, so a known plan is never replaced by the default (the SQL and Lua writers apply
    the same rule)."""
    if current is None or candidate.position > current.position:
        return candidate
    if candidate.position == current.position and candidate.plan != current.plan and candidate.plan != DEFAULT_PLAN:
        return candidate
    return current


def revocation_of(event: Envelope[EventData]) -> tuple[str, UUID] | None:
    """(username, credential id) a deactivation revokes: relays drop that credential's sessions, and only
    that credential's (a newer credential with the same username keeps its sessions). The other changes of a
    credential are announced by `change_of` (docs/interfaces.md)."""
    data = event.data
    if type(data) is CredentialDeactivated:
        return data.username.lower(), data.credential_id
    return None


# The changes that can end a live session without a deactivation (a secret retired by a rotation with grace 0 or
# a revocation, a suspension, a new allowlist or expiry), and a resume (harmless: a re-read that lets it send).
CHANGE_EVENTS = (
    CredentialSecretRotated,
    CredentialSecretRevoked,
    CredentialSuspended,
    CredentialResumed,
    CredentialRestrictionsChanged,
)


def change_of(event: Envelope[EventData]) -> tuple[str, UUID] | None:
    """(username, credential id) whose "credential changed" notice an applied event publishes: relays re-read
    that credential's entry before its live sessions' next command, RCPT and DATA included. Without the notice a
    relay re-reads a session's entry only at MAIL and at the end of DATA (and ends a grace period by its own
    clock)."""
    data = event.data
    if isinstance(data, CHANGE_EVENTS):
        return data.username.lower(), data.credential_id
    return None


CREDENTIAL_EVENTS = frozenset(
    {
        CredentialCreated,
        CredentialDeactivated,
        CredentialSecretRotated,
        CredentialSecretRevoked,
        CredentialSuspended,
        CredentialResumed,
        CredentialRestrictionsChanged,
    }
)

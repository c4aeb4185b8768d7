"""The credential rules of AUTH and of a logged-in session (docs/api.md, "Credential lifecycle"), as pure functions
over an auth cache entry and the relay's own clock (unix seconds): no I/O, unit-tested without Redis.

AUTH accepts any unexpired secret of a credential that is not deactivated, not expired, from an address inside its
`allowed_cidrs`; every other case is the one `535 5.7.8` and costs the same work. A suspended credential logs in
(its MAIL gets `451 4.7.1`). A logged-in session remembers the id of the secret it used, so that once that secret
is retired (its grace period ended, it was revoked, or a rotation with grace 0 replaced it) the session is refused
too, although the credential itself is still active. The end of a grace period needs no event: the entry carries
each secret's expiry and the relay compares it with its clock.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass
from uuid import UUID

from taifa_events.auth_cache import MAX_CACHED_SECRETS, AuthCacheEntry, CachedSecret
from taifa_events.secret_hash import HASH_SCHEME, hash_secret
from taifa_events.secrets import smtp_password_checksum_ok

# Compared against to pad the candidates to MAX_CACHED_SECRETS: every AUTH hashes once and compares as often.
_DUMMY_HASH = "0" * 64
_DUMMY = CachedSecret(id=UUID(int=0), hash=_DUMMY_HASH, scheme=HASH_SCHEME)
# Stand-in restrictions for an unknown username: the allowlist test costs about what a real entry's costs.
_STAND_IN_CIDRS = AuthCacheEntry(
    credential_id=UUID(int=0),
    account_id=UUID(int=0),
    domain_id=UUID(int=0),
    domain="stand-in.invalid",
    secret_hash=_DUMMY_HASH,
    hash_scheme=HASH_SCHEME,
    active=False,
    position=1,
    allowed_cidrs=("192.0.2.0/24",),
)


class SessionVerdict(enum.Enum):
    """What a re-read of the entry means for a logged-in session."""

    VALID = "valid"
    SUSPENDED = "suspended"  # stays logged in; MAIL (and the end of DATA) get 451 4.7.1 until resumed
    RETIRED = "retired"  # logged out with 535: deactivated, replaced, expired, secret retired, address refused


@dataclass(frozen=True, slots=True)
class Login:
    """What a session keeps of its AUTH: the credential and the secret it used, and the instant (unix seconds,
    from the last entry read) at which one of them expires; None: no expiry known."""

    credential_id: UUID
    secret_id: UUID
    valid_until: float | None


def password_well_formed(password: str) -> bool:
    """False for a `tmsmtp_` password whose form or checksum is wrong (a typo, a truncated copy): refused
    without any lookup. Passwords of the older format pass."""
    return smtp_password_checksum_ok(password)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one AUTH attempt showed: every mark worked out, whatever the outcome (`attempt`)."""

    entry: AuthCacheEntry | None
    matched: CachedSecret | None  # the valid secret the password opens
    allowed: bool  # the client address is inside the allowlist (a stand-in's for an unknown username)
    expired: bool
    usable: bool  # a known credential, not deactivated
    as_another: bool = False  # asked to act as another identity (AUTH PLAIN's authorization identity): refused


def attempt(
    entry: AuthCacheEntry | None, password: str, client_ip: str, now: float, *, as_another: bool = False
) -> Attempt:
    """Judge `password` on `entry` from `client_ip` at `now`; `as_another`: the client asked to act as an identity
    other than its username (the relay authorises nobody to act for another, RFC 4616 §2), refused alike.

    The same work whatever the reason of a refusal (unknown username, wrong password, deactivated or expired
    credential, retired secret, address outside `allowed_cidrs`), so timing tells them apart no better than the
    reply: one SHA-256, exactly MAX_CACHED_SECRETS constant-time comparisons (padded with a dummy hash), then
    every restriction evaluated without short-circuit, after the hash work."""
    candidate = hash_secret(password).encode()
    valid = entry.valid_secrets(now) if entry is not None else ()
    slots = (*valid, *(_DUMMY,) * MAX_CACHED_SECRETS)[:MAX_CACHED_SECRETS]
    matched: CachedSecret | None = None
    for secret in slots:
        same = hmac.compare_digest(candidate, secret.hash.encode())
        if same and secret.scheme == HASH_SCHEME and secret is not _DUMMY and matched is None:
            matched = secret
    restrictions = entry if entry is not None else _STAND_IN_CIDRS
    allowed = restrictions.address_allowed(client_ip)
    expired = restrictions.is_expired(now)
    usable = entry is not None and _not_deactivated(entry)
    return Attempt(entry, matched, allowed, expired, usable, as_another)


def login_of(judged: Attempt) -> Login | None:
    """The login the attempt opens, or None."""
    entry, matched = judged.entry, judged.matched
    if matched is None or not judged.allowed or judged.expired or not judged.usable or entry is None:
        return None
    if judged.as_another:
        return None
    return Login(entry.credential_id, matched.id, valid_until(entry, matched))


def _not_deactivated(entry: AuthCacheEntry) -> bool:
    """Both marks agree on a parsed entry; either one saying deactivated is enough to refuse."""
    return entry.active and entry.status != "deactivated"


def valid_until(entry: AuthCacheEntry, secret: CachedSecret) -> float | None:
    """The earlier of the secret's and the credential's expiry (None when neither expires)."""
    ends = [end for end in (secret.expires_at, entry.expires_at) if end is not None]
    return float(min(ends)) if ends else None


def session_verdict(entry: AuthCacheEntry | None, login: Login, client_ip: str, now: float) -> SessionVerdict:
    """A logged-in session against a fresh read of its entry: still the same credential, not deactivated nor
    expired, the session's secret still valid and the client still inside the allowlist (a restriction added
    because a secret leaked also cuts the sessions already open); suspended when all of that holds but the
    credential is suspended."""
    if entry is None or entry.credential_id != login.credential_id or not _not_deactivated(entry):
        return SessionVerdict.RETIRED
    if entry.is_expired(now) or not entry.address_allowed(client_ip):
        return SessionVerdict.RETIRED
    if not any(secret.id == login.secret_id for secret in entry.valid_secrets(now)):
        return SessionVerdict.RETIRED
    return SessionVerdict.SUSPENDED if entry.status == "suspended" else SessionVerdict.VALID


def refreshed(entry: AuthCacheEntry, login: Login) -> Login:
    """The login with the expiry of its secret and credential as `entry` now states them (a rotation or a
    restriction change after the AUTH may have set one), for the clock-only checks of RCPT and DATA."""
    for secret in entry.secrets:
        if secret.id == login.secret_id:
            return Login(login.credential_id, login.secret_id, valid_until(entry, secret))
    return login


def expired_by_clock(login: Login, now: float) -> bool:
    """The session's secret or credential has expired by the relay's clock (no read needed)."""
    return login.valid_until is not None and now >= login.valid_until


def failure_reason(judged: Attempt) -> str:
    """Why a failed attempt on an existing username failed, for its owner's usage report (never for the client, who
    gets the one 535): the credential deactivated (`auth_inactive`) or expired (`auth_expired`), the right password
    from an address outside `allowed_cidrs` (`auth_cidr`), else a wrong or retired secret (`auth_secret`; an
    unknown username, and a request to act as another identity, too). Read from the marks `attempt` worked out for
    every case alike: no work of its own (A11)."""
    if judged.entry is None:
        return "auth_secret"
    if not judged.usable:
        return "auth_inactive"
    if judged.expired:
        return "auth_expired"
    if judged.matched is not None and not judged.allowed:
        return "auth_cidr"
    return "auth_secret"

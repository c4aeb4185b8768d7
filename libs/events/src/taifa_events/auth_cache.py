"""The auth cache format (docs/interfaces.md, "Redis"): written by the projector, read by the relay.

One Redis hash per SMTP username. A write applies only when its `position` is newer than the stored
one; a deactivation is a tombstone (`active` = 0) with a newer position, announced on
`REVOCATIONS_CHANNEL` so relays can drop live sessions at once. A missing entry means "no such
credential". `EPOCH_KEY` exists while the cache is complete: when Redis loses data (flush, restart
from an old snapshot) the projector sees the epoch missing or changed and rebuilds. While it repairs a
cache that fell behind (old snapshot), or after Redis refused one of its writes, the projector deletes the
epoch first, so relays treat the cache as unavailable until the rebuild sets a new epoch and then the
watermark. Revocations are published for every applied `CredentialDeactivated` (`revocation_message`); every
other applied change of a credential (rotation, secret revoked, suspension, resume, restrictions) publishes a
"credential changed" notice on the same channel (`change_message`): relays re-read that credential's entry
before its live sessions' next command. `parse_notice` reads both.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any, Literal, NamedTuple, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from taifa_events.events import CredentialLimits
from taifa_events.secrets import initial_secret_id

KEY_PREFIX = "taifa:auth:user:"
REVOCATIONS_CHANNEL = "taifa:auth:revocations"
EPOCH_KEY = "taifa:auth:epoch"
# The highest event position whose effects this cache holds. The projector raises it in the same Redis
# transaction as the entries it writes (never lowers it; a rebuild sets it last). A relay remembers the
# highest value it has read: a cache whose watermark went backwards (restarted from an old snapshot) or
# whose epoch is missing (flushed) is treated as unavailable (454, retry) until the projector repairs it,
# so a revoked credential never logs in again from stale data.
WATERMARK_KEY = "taifa:auth:watermark"
# Verified domain names and the account that holds each (`DOMAIN_OWNER_PREFIX + name` -> account id), kept
# by the projector from DomainVerified / DomainReleased. The relay reads them so that a credential for
# `example.com` cannot send as `mail.example.com` once another account has verified that subdomain.
# Format: a plain string, the owning account's UUID in canonical text (`str(uuid)`); no key = no account
# holds that name. Set on DomainVerified, deleted on DomainReleased (only while it still names the releasing
# account), both position-guarded with the position kept in a projector-only sibling key; rebuilt with the
# auth entries from the read model. A relay GETs `domain_owner_key(name)` for the name and each parent.
DOMAIN_OWNER_PREFIX = "taifa:auth:domain:"

# Read-your-writes: once an event's effects are in both stores the projector sets
# `APPLIED_KEY_PREFIX + event_id` (with a TTL) and publishes the event id on APPLIED_CHANNEL.
APPLIED_CHANNEL = "taifa:projection:applied"
APPLIED_KEY_PREFIX = "taifa:projection:applied:"
# One key per event: the TTL only has to cover the API's bounded wait (TAIFA_API_PROJECTION_WAIT_SECONDS, at
# most this long), since the API checks the key right after it starts listening. An hour kept 3,600 s of
# events in Redis, beside the auth cache: 72 M keys (gigabytes) at 20,000 events/s; a minute keeps 1.2 M.
APPLIED_TTL_SECONDS = 60


def auth_key(username: str) -> str:
    """The Redis key of one username's entry (usernames are compared lowercase)."""
    return KEY_PREFIX + username.lower()


def domain_owner_key(name: str) -> str:
    """The Redis key holding the account id that has verified domain `name` (compared lowercase)."""
    return DOMAIN_OWNER_PREFIX + name.rstrip(".").lower()


class Revocation(NamedTuple):
    """One message on REVOCATIONS_CHANNEL: `credential_id` None only for the seed's plain-username form."""

    username: str
    credential_id: str | None


class CredentialChange(NamedTuple):
    """A "credential changed" notice on REVOCATIONS_CHANNEL: live sessions of that credential (of every credential
    of the username when `credential_id` is None) re-read the entry before their next command. Never a revocation
    by itself: the re-read decides."""

    username: str
    credential_id: str | None


# The `kind` of a change notice. A revocation has no `kind` (the form relays have always read), so that relays of
# every version read it alike. Upgrade relays before the projector: a relay older than this notice reads it as a
# revocation of that credential (fail closed: its sessions authenticate again).
CHANGED = "changed"


def revocation_message(username: str, credential_id: UUID | str) -> str:
    """The message published when a credential is deactivated: sessions of that credential (not of a newer
    credential with the same username) are refused from then on."""
    return json.dumps({"username": username.lower(), "credential_id": str(credential_id)}, separators=(",", ":"))


def change_message(username: str, credential_id: UUID | str) -> str:
    """The notice published when a credential changed without being deactivated (rotation, a secret revoked,
    suspension, resume, restrictions): relays re-read its entry before its live sessions' next command."""
    return json.dumps(
        {"username": username.lower(), "credential_id": str(credential_id), "kind": CHANGED}, separators=(",", ":")
    )


def parse_notice(message: str | bytes) -> Revocation | CredentialChange | None:
    """Read a message on REVOCATIONS_CHANNEL (None: unreadable). A plain username (the seed's form) revokes every
    session of that name; JSON without `kind` revokes that credential; any `kind`, known or not, is a change notice
    (a re-read, never a revocation: a later form cannot revoke every session by being misread)."""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    if not text.startswith("{"):
        return Revocation(text.strip().lower(), None) if text.strip() else None
    try:
        body = json.loads(text)
        username, credential_id, kind = body["username"], body.get("credential_id"), body.get("kind")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(username, str) or not username or not isinstance(credential_id, str | None):
        return None
    if kind is not None:
        return CredentialChange(username.lower(), credential_id)
    return Revocation(username.lower(), credential_id)


def parse_revocation(message: str | bytes) -> Revocation | None:
    """Read a revocation message; a plain username (the seed's form) revokes every session of that name. A change
    notice (or any message with a `kind`) is not a revocation: None."""
    notice = parse_notice(message)
    return notice if isinstance(notice, Revocation) else None


def applied_key(event_id: UUID | str) -> str:
    return f"{APPLIED_KEY_PREFIX}{event_id}"


EntryStatus = Literal["active", "suspended", "deactivated"]
# The cache format the projector writes (`format` field). An entry without `format` is v1 (the seed's); a
# higher one than a reader knows reads as missing, so an old relay never misreads a newer entry.
CACHE_FORMAT = 2
MAX_CACHED_SECRETS = 2


@lru_cache(maxsize=4096)
def _networks(cidrs: tuple[str, ...]) -> tuple[IPv4Network | IPv6Network, ...]:
    """Parsed allowlists, memoised: the relay re-reads the entry at every AUTH and session check."""
    return tuple(ip_network(cidr, strict=True) for cidr in cidrs)


@lru_cache(maxsize=4096)
def _ranges(cidrs: tuple[str, ...]) -> dict[int, tuple[tuple[int, int], ...]]:
    """Per IP version, (network as an integer, netmask as an integer) of each network: the allowlist test at
    every AUTH is then a few integer operations (the relay's AUTH cost budget, `make bench-relay`). An IPv4-mapped
    network (`::ffff:203.0.113.0/120`, stored as given before the API wrote its IPv4 form) is its IPv4 network, as
    a mapped client address is compared as IPv4."""
    networks = [unmapped_network(n) for n in _networks(cidrs)]
    return {
        version: tuple((int(n.network_address), int(n.netmask)) for n in networks if n.version == version)
        for version in (4, 6)
    }


def unmapped_network(network: IPv4Network | IPv6Network) -> IPv4Network | IPv6Network:
    """An IPv4-mapped IPv6 network (prefix 96 or longer) as its IPv4 network; any other network as it is."""
    mapped = network.network_address.ipv4_mapped if isinstance(network, IPv6Network) else None
    if mapped is None or network.prefixlen < 96:
        return network
    return IPv4Network((mapped, network.prefixlen - 96))


@lru_cache(maxsize=65536)
def _client_ip(address: str) -> tuple[int, int] | None:
    """(version, integer) of a client address, memoised: a client logs in from the same address again and again."""
    ip = _to_ip(address)
    return None if ip is None else (ip.version, int(ip))


def _to_ip(address: str) -> IPv4Address | IPv6Address | None:
    try:
        ip = ip_address(address.strip().removeprefix("[").removesuffix("]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class CachedSecret(BaseModel):
    """One valid secret of a credential: its hash and when it stops working (unix seconds, None = no end)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: UUID
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    scheme: str
    expires_at: int | None = None

    def valid_at(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


class AuthCacheEntry(BaseModel):
    """One username's entry as stored in its Redis hash (format v2; v1 entries are read too).

    The seed's fields stay (`secret_hash`/`hash_scheme` = the newest secret's, `active` = not deactivated) so
    that readers of v1 keep working; constructed from those alone, the entry has one secret with the derived
    id (`initial_secret_id`), status from `active`, and no restrictions."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    credential_id: UUID
    account_id: UUID
    domain_id: UUID
    domain: str
    secret_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    hash_scheme: str
    active: bool
    position: int = Field(ge=1)
    status: EntryStatus = "active"
    secrets: tuple[CachedSecret, ...] = Field(default=(), min_length=1, max_length=MAX_CACHED_SECRETS)
    expires_at: int | None = None
    allowed_cidrs: tuple[str, ...] = ()
    limits: CredentialLimits = Field(default_factory=CredentialLimits)
    # The account's plan (its daily recipient quota, taifa_events.usage.PLAN_DAILY_QUOTAS). An entry written before
    # plans reached the cache reads as "free": the smallest quota is the safe default.
    plan: str = Field(default="free", min_length=1, max_length=64)

    @model_validator(mode="before")
    @classmethod
    def _v1_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if data.get("status") is None:
                data = {**data, "status": "active" if data.get("active") else "deactivated"}
            if data.get("secrets") is None and "credential_id" in data:
                secret = {
                    "id": initial_secret_id(data["credential_id"]),
                    "hash": data.get("secret_hash"),
                    "scheme": data.get("hash_scheme"),
                    "expires_at": None,
                }
                data = {**data, "secrets": (secret,)}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.active != (self.status != "deactivated"):
            raise ValueError("active and status disagree")
        _networks(self.allowed_cidrs)  # a damaged allowlist fails the entry (read as missing: closed)
        return self

    def valid_secrets(self, now: float) -> tuple[CachedSecret, ...]:
        """The secrets that still work at `now` (unix seconds), newest first."""
        return tuple(secret for secret in self.secrets if secret.valid_at(now))

    def is_expired(self, now: float) -> bool:
        """The credential itself has expired (`expires_at`, from the restrictions)."""
        return self.expires_at is not None and now >= self.expires_at

    def address_allowed(self, ip: str) -> bool:
        """The client address is inside `allowed_cidrs` (empty = any address; IPv4-mapped IPv6 is compared as
        IPv4; an unparseable address is outside every non-empty list)."""
        if not self.allowed_cidrs:
            return True
        address = _client_ip(ip)
        if address is None:
            return False
        version, value = address
        return any(value & mask == network for network, mask in _ranges(self.allowed_cidrs)[version])

    def to_redis(self) -> dict[str, str]:
        """Flat string mapping for HSET (format v2)."""
        return {
            "format": str(CACHE_FORMAT),
            "credential_id": str(self.credential_id),
            "account_id": str(self.account_id),
            "domain_id": str(self.domain_id),
            "domain": self.domain,
            "secret_hash": self.secret_hash,
            "hash_scheme": self.hash_scheme,
            "active": "1" if self.active else "0",
            "position": str(self.position),
            "status": self.status,
            "secrets": secrets_json(self.secrets),
            "expires_at": "" if self.expires_at is None else str(self.expires_at),
            "allowed_cidrs": json.dumps(list(self.allowed_cidrs), separators=(",", ":")),
            "limits": json.dumps(
                {
                    "messages_per_minute": self.limits.messages_per_minute,
                    "messages_per_day": self.limits.messages_per_day,
                },
                separators=(",", ":"),
            ),
            "plan": self.plan,
        }

    @classmethod
    def from_redis(cls, mapping: dict[str, str] | dict[bytes, bytes]) -> Self | None:
        """Parse an HGETALL result; an empty or damaged entry, or one of an unknown format, reads as missing
        (fail closed). An entry without `format` is v1: its one secret, status from `active`, no restrictions."""
        if not mapping:
            return None
        text = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in mapping.items()
        }
        try:
            version = text.get("format")
            if version is None:
                v1 = {name: text[name] for name in _V1_FIELDS if name in text}
                return cls.model_validate({**v1, "active": text.get("active") == "1", "status": None, "secrets": None})
            if version != str(CACHE_FORMAT):
                return None
            expires_at = text["expires_at"]
            return cls.model_validate(
                {
                    **{name: text[name] for name in _V1_FIELDS if name in text},
                    "active": text.get("active") == "1",
                    "status": text["status"],
                    "secrets": json.loads(text["secrets"]),
                    "expires_at": int(expires_at) if expires_at else None,
                    "allowed_cidrs": json.loads(text["allowed_cidrs"]),
                    "limits": json.loads(text["limits"]),
                    "plan": text.get("plan") or "free",
                }
            )
        except (ValueError, KeyError, TypeError):
            return None


_V1_FIELDS = ("credential_id", "account_id", "domain_id", "domain", "secret_hash", "hash_scheme", "position")


def secrets_json(secrets: Iterable[CachedSecret]) -> str:
    """The `secrets` field: a JSON list, newest first (the projector's writer builds the same text)."""
    return json.dumps(
        [{"id": str(s.id), "hash": s.hash, "scheme": s.scheme, "expires_at": s.expires_at} for s in secrets],
        separators=(",", ":"),
    )

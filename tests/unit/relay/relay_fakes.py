"""Fakes of the relay's own ports (application.ports) for the application-layer unit tests: an in-memory auth
cache reader and an upstream that records what it was given. No socket, no Redis. And the per-connection limits the
protocol-level tests build their protocol objects with, and the login and delivery helpers of the credential
lifecycle tests (test_relay_login_lifecycle.py, test_relay_change_notices.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from taifa_events.auth_cache import AuthCacheEntry, CachedSecret
from taifa_events.secret_hash import HASH_SCHEME, hash_secret
from taifa_relay.application.ports import (
    CacheStale,
    CacheUnavailable,
    Lookup,
    RecipientTaken,
    UpstreamReply,
    WriteRefused,
)
from taifa_relay.application.sessions import RecentChecks, SessionRegistry, SessionState
from taifa_relay.application.submission import LoggedOut, Refused, Submission
from taifa_relay.domain import replies
from taifa_relay.domain.limits import AdmissionLimits, AuthFailureLimits
from taifa_relay.entrypoints.session_state import ProtocolLimits

CLIENT = "192.0.2.7"
T = TypeVar("T")
MESSAGE = b"From: app@own.example\r\nTo: a@dest.example\r\nSubject: hi\r\n\r\nHi.\r\n"
LOGGED_OUT = LoggedOut(replies.CREDENTIAL_REVOKED, ("revoked-in-session",))
SUSPENDED = Refused(replies.CREDENTIAL_SUSPENDED, ("refused:suspended",))  # counted as a usage refusal
NEW, OLD = "new-password", "old-password"


def entry(domain: str = "own.example", secret: str = "right", *, active: bool = True) -> AuthCacheEntry:  # noqa: S107
    """A v1-shaped entry (the seed's fields only): one secret with the derived id, no restrictions."""
    return AuthCacheEntry(
        credential_id=uuid.uuid4(),
        account_id=uuid.uuid4(),
        domain_id=uuid.uuid4(),
        domain=domain,
        secret_hash=hash_secret(secret),
        hash_scheme=HASH_SCHEME,
        active=active,
        position=1,
    )


def secret(password: str, expires_at: int | None = None) -> CachedSecret:
    return CachedSecret(id=uuid.uuid4(), hash=hash_secret(password), scheme=HASH_SCHEME, expires_at=expires_at)


def lifecycle_entry(
    *secrets: CachedSecret,
    status: str = "active",
    expires_at: int | None = None,
    allowed_cidrs: tuple[str, ...] = (),
    like: AuthCacheEntry | None = None,
) -> AuthCacheEntry:
    """A v2 entry with `secrets` (newest first), as the projector writes after rotations and restrictions; `like`:
    the same credential as that entry (a later state of it)."""
    base = like or entry()
    return base.model_copy(
        update={
            "secret_hash": secrets[0].hash,
            "status": status,
            "active": status != "deactivated",
            "secrets": secrets,
            "expires_at": expires_at,
            "allowed_cidrs": allowed_cidrs,
            "position": base.position + 1,
        }
    )


class FakeAuthCache:
    """`AuthCacheReader` in memory. `down` makes every read fail as Redis unreachable; `stale` as an untrusted
    cache; `writes_refused` makes counting a failure fail as a read-only Redis user."""

    def __init__(self, entries: dict[str, AuthCacheEntry] | None = None) -> None:
        self.entries = dict(entries or {})
        self.down = False
        self.stale = False
        self.writes_refused = False
        self.for_username: dict[tuple[str, str], int] = {}
        self.for_address: dict[str, int] = {}
        self.throttled: set[tuple[str, str | None]] = set()
        self.lookups = 0
        self.rechecks = 0

    def _read(self) -> None:
        if self.down:
            raise CacheUnavailable("ConnectionError")
        if self.stale:
            raise CacheStale("watermark went backwards")

    def is_throttled(self, address_group: str, username: str) -> bool:
        return (address_group, username) in self.throttled or (address_group, None) in self.throttled

    def mark_throttled(self, address_group: str, username: str, *, username_too: bool, address: bool) -> None:
        if username_too:
            self.throttled.add((address_group, username))
        if address:
            self.throttled.add((address_group, None))

    async def lookup(self, username: str, address_group: str) -> Lookup:
        self.lookups += 1
        self._read()
        return Lookup(
            self.entries.get(username),
            self.for_username.get((address_group, username), 0),
            self.for_address.get(address_group, 0),
        )

    async def record_failure(self, address_group: str, username: str) -> tuple[int, int]:
        if self.writes_refused:
            raise WriteRefused("NoPermissionError")
        self._read()
        key = (address_group, username)
        self.for_username[key] = self.for_username.get(key, 0) + 1
        self.for_address[address_group] = self.for_address.get(address_group, 0) + 1
        return self.for_username[key], self.for_address[address_group]

    async def reread(self, username: str) -> AuthCacheEntry | None:
        self.rechecks += 1
        self._read()
        return self.entries.get(username)


@dataclass
class Clock:
    """The relay's clock in unit tests (unix seconds), moved by hand."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeOwners:
    def __init__(self, owners: dict[str, str] | None = None) -> None:
        self.by_name = dict(owners or {})

    async def owners(self, names: list[str]) -> list[str | None]:
        return [self.by_name.get(name) for name in names]


@dataclass
class FakeUpstream:
    """`Upstream` that answers `reply` and keeps every transaction it was given."""

    reply: UpstreamReply = field(default_factory=lambda: UpstreamReply(True, 250, "OK"))
    sent: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def send(self, sender: str, recipients: list[str], message: bytes) -> UpstreamReply:
        self.sent.append((sender, recipients, message))
        return self.reply


class FakeSendingLimits:
    """The shared limit counters in memory, with the adapter's semantics (both day counters or neither)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.down = False
        self.notices: list[tuple[str, int]] = []

    def _check(self) -> None:
        if self.down:
            raise CacheUnavailable("ConnectionError")

    async def take_message(self, credential_id: str, per_minute: int, now: float) -> bool:
        self._check()
        key = f"m:{credential_id}:{int(now) // 60}"
        if self.counts.get(key, 0) + 1 > per_minute:
            return False
        self.counts[key] = self.counts.get(key, 0) + 1
        return True

    async def take_recipient(
        self, credential_id: str, account_id: str, per_day: int | None, quota: int, now: float
    ) -> RecipientTaken:
        self._check()
        quota_key, day_key = f"q:{account_id}", f"d:{credential_id}"
        account = self.counts.get(quota_key, 0)
        if account + 1 > quota:
            return RecipientTaken("quota", account)
        if per_day is not None and self.counts.get(day_key, 0) + 1 > per_day:
            return RecipientTaken("limits", account)
        self.counts[quota_key] = account + 1
        self.counts[day_key] = self.counts.get(day_key, 0) + 1
        return RecipientTaken(None, account + 1)


class FakeUsage:
    """Records every usage call as (method, args)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def auth_succeeded(self, *args: object) -> None:
        self.calls.append(("auth_succeeded", args))

    def auth_failed(self, *args: object) -> None:
        self.calls.append(("auth_failed", args))

    def refused(self, *args: object) -> None:
        self.calls.append(("refused", args))

    def delivered(self, *args: object) -> None:
        self.calls.append(("delivered", args))

    def names(self, method: str) -> list[object]:
        """The reason (auth_failed, refused) or the recipients count (delivered) of each call of `method`."""
        index = {"auth_failed": 2, "refused": 2, "delivered": 4, "auth_succeeded": 2}[method]
        return [args[index] for name, args in self.calls if name == method]


@dataclass
class World:
    cache: FakeAuthCache
    upstream: FakeUpstream
    owners: FakeOwners
    sessions: SessionRegistry[object]
    submission: Submission
    sending: FakeSendingLimits
    usage: FakeUsage


def world(
    entries: dict[str, AuthCacheEntry] | None = None,
    *,
    per_connection: int = 3,
    per_address_username: int = 10,
    per_address: int = 200,
    recheck_seconds: float = 0.0,
    admission: AdmissionLimits | None = None,
    clock: Callable[[], float] = time.time,
    plan_quotas: dict[str, int] | None = None,
) -> World:
    cache, upstream, owners = FakeAuthCache(entries), FakeUpstream(), FakeOwners()
    sending = FakeSendingLimits()
    usage = FakeUsage()
    sessions: SessionRegistry[object] = SessionRegistry(
        admission or AdmissionLimits(max_sessions=100, max_sessions_per_client=10, max_connections_per_minute=100),
        RecentChecks(recheck_seconds),
    )
    submission = Submission(
        auth_cache=cache,
        domain_owners=owners,
        upstream=upstream,
        sessions=sessions,
        hostname="relay.test",
        max_recipients=3,
        auth_limits=AuthFailureLimits(
            per_connection=per_connection, per_address_username=per_address_username, per_address=per_address
        ),
        max_own_received_headers=3,
        sending=sending,
        usage_recorder=usage,
        plan_quotas=plan_quotas,
        clock=clock,
    )
    return World(cache, upstream, owners, sessions, submission, sending, usage)


def new_state(client_ip: str = CLIENT) -> SessionState:
    return SessionState(client_ip)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def auth(w: World, password: str, *, username: str = "user1", client_ip: str = "192.0.2.7") -> Any:
    state = new_state(client_ip)
    return run(w.submission.authenticate(state, username.encode(), password.encode())), state


def deliver(w: World, state: SessionState) -> Any:
    return run(
        w.submission.deliver(
            state, helo="c.test", tls_version="TLSv1.3", sender="app@own.example", recipients=["a@x"], message=MESSAGE
        )
    )


def rotated(clock: Clock, grace: float) -> tuple[World, Any]:
    """A credential rotated at `clock.now` with `grace` seconds for the old secret."""
    old_secret = secret(OLD, int(clock.now + grace))
    cred = lifecycle_entry(secret(NEW), old_secret)
    return world({"user1": cred}, clock=clock), cred


def protocol_limits(proxy_timeout: float | None = None) -> ProtocolLimits:
    """Per-connection limits for protocol objects built without a relay (entrypoints tests)."""
    return ProtocolLimits(
        hostname="relay.test",
        max_message_bytes=1_000_000,
        max_line_length=1001,
        max_command_length=512,
        idle_timeout=120.0,
        min_data_rate=100,
        data_rate_grace=5.0,
        error_soft_limit=5,
        error_hard_limit=10,
        error_delay=0.0,
        proxy_timeout=proxy_timeout,
    )

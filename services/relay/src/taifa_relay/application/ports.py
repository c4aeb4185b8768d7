"""The relay's ports: what the application needs from the auth cache, the domain-owner lookups and the upstream
MTA, and the errors they raise. The Redis and SMTP adapters implement them; unit tests use fakes of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

from taifa_events.auth_cache import AuthCacheEntry


class CacheUnavailable(Exception):
    """Redis could not answer, or its cache cannot be trusted right now; the caller must fail closed."""


class CacheStale(CacheUnavailable):
    """The cache's epoch is missing or its watermark is missing or lower than one this relay has read."""


class WriteRefused(CacheUnavailable):
    """Redis refused a write (NOPERM from an ACL without write access, READONLY replica...)."""


class Lookup(NamedTuple):
    """What one AUTH reads in one round trip: the entry and the failure counts that apply to this attempt."""

    entry: AuthCacheEntry | None
    failures_for_username: int
    failures_for_address: int


class MinuteTaken(NamedTuple):
    """MAIL's re-read and per-minute count in one round trip (`MailRecheck`). `unchanged`: the cache is trusted and
    the entry is exactly the one the session was judged valid on, so the minute was counted, unless that would
    exceed the limit (`counted` False: nothing counted). Otherwise nothing was counted and `entry` is the entry as
    read now (None: missing or damaged), to be judged as any re-read."""

    unchanged: bool
    counted: bool
    entry: AuthCacheEntry | None


class MailRecheck(Protocol):
    """MAIL's credential re-check and per-minute count in one round trip, where the cache can do both atomically."""

    async def recheck_and_take_minute(
        self, username: str, judged: AuthCacheEntry, credential_id: str, per_minute: int, now: float
    ) -> MinuteTaken | None:
        """Re-read the entry; if it is still `judged` (and the cache trusted), count one message in the credential's
        UTC minute unless that exceeds `per_minute`. None: not possible in one round trip here (the caller re-reads,
        judges, then counts). Raises CacheUnavailable."""
        ...


class AuthCacheReader(Protocol):
    """The projector's auth cache as the relay reads it, plus the relay's own AUTH failure counters."""

    def is_throttled(self, address_group: str, username: str) -> bool:
        """True while a counter of this attempt is known to be at its limit (no Redis command)."""
        ...

    def mark_throttled(self, address_group: str, username: str, *, username_too: bool, address: bool) -> None:
        """Remember that a counter reached its limit, until its window ends."""
        ...

    async def lookup(self, username: str, address_group: str) -> Lookup:
        """The entry and the failure counts in one round trip; raises CacheUnavailable."""
        ...

    async def record_failure(self, address_group: str, username: str) -> tuple[int, int]:
        """Count one failed AUTH: (count for address group + username, count for the address group)."""
        ...

    async def reread(self, username: str) -> AuthCacheEntry | None:
        """The entry as it is now, for the re-checks of a logged-in session (None: missing or damaged), read with
        the cache's trust markers in one round trip; raises CacheUnavailable."""
        ...


class RecipientTaken(NamedTuple):
    """The result of counting one recipient: `refused` names the limit it would exceed ("limits": the
    credential's messages_per_day, "quota": the plan's daily quota; nothing was counted), else None."""

    refused: str | None
    account_count: int


class SendingLimits(Protocol):
    """The shared counters of the sending limits (every relay instance counts in the same place, atomically)."""

    async def take_message(self, credential_id: str, per_minute: int, now: float) -> bool:
        """Count one message in the credential's UTC minute; False (nothing counted) when it would exceed
        `per_minute`. Raises CacheUnavailable: never an unlimited send."""
        ...

    async def take_recipient(
        self, credential_id: str, account_id: str, per_day: int | None, quota: int, now: float
    ) -> RecipientTaken:
        """Count one recipient against the credential's day limit (None: none) and the account's daily quota, both
        or neither; a crossing of 80 %/100 % of the quota is announced. Raises CacheUnavailable."""
        ...


class UsageRecorder(Protocol):
    """Usage per credential (docs/api.md, "Usage"): every call only records in memory, with no I/O; the adapter
    sends the counts with the Redis round trips the relay makes anyway (and flushes what is left every second)."""

    def auth_succeeded(self, credential_id: str, account_id: str, secret_id: str, client_ip: str, now: float) -> None:
        """One AUTH success; the credential, secret and address were last used now."""
        ...

    def auth_failed(self, credential_id: str, account_id: str, reason: str, now: float) -> None:
        """One failed AUTH for an existing username, with why (auth_secret, auth_cidr, auth_expired...)."""
        ...

    def refused(self, credential_id: str, account_id: str, reason: str, now: float) -> None:
        """One command or message refused for `reason` (policy, limits, quota, suspended, upstream, throttled)."""
        ...

    def delivered(
        self,
        credential_id: str,
        account_id: str,
        secret_id: str,
        client_ip: str,
        recipients: int,
        size: int,
        now: float,
    ) -> None:
        """One message the upstream accepted."""
        ...


class DomainOwnerLookup(Protocol):
    """Which account has verified a domain name."""

    async def owners(self, names: list[str]) -> list[str | None]:
        """The account id that verified each name (None: no account has); raises CacheUnavailable."""
        ...


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    """The upstream's verdict: `accepted`, or a code/text that maps to the reply for our client (code 0:
    the upstream could not be reached or the transaction broke off)."""

    accepted: bool
    code: int
    text: str


class Upstream(Protocol):
    """The MTA accepted messages are forwarded to."""

    async def send(self, sender: str, recipients: list[str], message: bytes) -> UpstreamReply:
        """One all-or-nothing transaction."""
        ...

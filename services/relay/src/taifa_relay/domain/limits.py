"""The relay's numeric limits as pure rules: admission caps per client address group and per process, and the
AUTH failure thresholds. No clock and no I/O here: the caller passes the time, so every rule is unit-tested."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from taifa_relay.domain import replies

CONNECTION_RATE_WINDOW_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """Sessions open at once (whole process, and per client group) and new connections per group per minute."""

    max_sessions: int
    max_sessions_per_client: int
    max_connections_per_minute: int


class Admission:
    """Counts sessions and connections per client address group (`policy.address_group`: an IPv6 /64 is one
    client). The connection rate is a fixed window (Postfix anvil style) that starts at `now` and every 60 s."""

    def __init__(self, limits: AdmissionLimits, now: float) -> None:
        self.limits = limits
        self._window_start = now
        self.connections_this_minute: dict[str, int] = defaultdict(int)
        self.per_client: dict[str, int] = defaultdict(int)
        self.open = 0

    def admit(self, group: str, now: float) -> str | None:
        """Count one new connection of `group`; the refusal reply when it is over a cap (then nothing stays
        counted but the connection itself, which counts against the rate even when refused)."""
        if now - self._window_start >= CONNECTION_RATE_WINDOW_SECONDS:
            self._window_start = now
            self.connections_this_minute.clear()
        if self.connections_this_minute[group] >= self.limits.max_connections_per_minute:
            return replies.TOO_MANY_CONNECTIONS
        self.connections_this_minute[group] += 1
        if self.open >= self.limits.max_sessions:
            return replies.SERVER_BUSY
        if self.per_client[group] >= self.limits.max_sessions_per_client:
            return replies.TOO_MANY_SESSIONS
        self.per_client[group] += 1
        self.open += 1
        return None

    def release(self, group: str) -> None:
        """An admitted session of `group` ended (its group's entry is dropped at zero: memory follows live sessions)."""
        self.open -= 1
        self.per_client[group] -= 1
        if self.per_client[group] <= 0:
            del self.per_client[group]


@dataclass(frozen=True, slots=True)
class AuthFailureLimits:
    """Failed AUTHs tolerated: per connection, per (address group, username) and per address group per window."""

    per_connection: int
    per_address_username: int
    per_address: int

    def over(self, for_username: int, for_address: int) -> tuple[bool, bool]:
        """(the (address group, username) count is at its limit, the address group's count is at its limit)."""
        return for_username >= self.per_address_username, for_address >= self.per_address

    def closes_connection(self, connection_failures: int, *, over_username: bool, over_address: bool) -> bool:
        """After a failed AUTH: whether the connection ends (454 and close) instead of letting the client retry."""
        return connection_failures >= self.per_connection or over_username or over_address

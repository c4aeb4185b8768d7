"""credentials.failure_reason: the reason a failed AUTH counts under in its owner's usage, read from the marks
`credentials.attempt` works out alike for every case (A11: one hash, MAX_CACHED_SECRETS comparisons, every mark)."""

from __future__ import annotations

from taifa_events.auth_cache import AuthCacheEntry
from taifa_relay.domain import credentials

from tests.unit.relay.relay_fakes import entry, lifecycle_entry, secret

NOW = 1_790_000_000.0
INSIDE, OUTSIDE = "192.0.2.10", "198.51.100.7"


def reason(cached: AuthCacheEntry | None, password: str, client_ip: str, now: float) -> str:
    return credentials.failure_reason(credentials.attempt(cached, password, client_ip, now))


def test_each_reason_and_its_precedence() -> None:
    right = secret("right")
    plain = lifecycle_entry(right)
    assert reason(plain, "wrong", INSIDE, NOW) == "auth_secret"
    assert reason(entry(active=False), "right", INSIDE, NOW) == "auth_inactive"
    expired = lifecycle_entry(right, expires_at=int(NOW) - 1)
    assert reason(expired, "right", INSIDE, NOW) == "auth_expired"
    fenced = lifecycle_entry(right, allowed_cidrs=("192.0.2.0/24",))
    assert reason(fenced, "right", OUTSIDE, NOW) == "auth_cidr"
    assert reason(fenced, "wrong", OUTSIDE, NOW) == "auth_secret"  # no secret opened it
    # Deactivated before expired before the allowlist, as the usage report names them.
    both = lifecycle_entry(right, status="deactivated", expires_at=int(NOW) - 1, allowed_cidrs=("192.0.2.0/24",))
    assert reason(both, "right", OUTSIDE, NOW) == "auth_inactive"


def test_a_retired_secret_is_a_wrong_secret_and_an_unknown_username_counts_as_one() -> None:
    retired = lifecycle_entry(secret("new"), secret("old", expires_at=int(NOW) - 1))
    assert reason(retired, "old", INSIDE, NOW) == "auth_secret"
    assert reason(None, "anything", INSIDE, NOW) == "auth_secret"

"""Account plans and the rule that caps active SMTP credentials per plan."""

from __future__ import annotations

from typing import Final, Literal

Plan = Literal["free", "starter", "pro", "enterprise"]

PLANS: Final[tuple[str, ...]] = ("free", "starter", "pro", "enterprise")

DEFAULT_PLAN_LIMITS: Final[dict[str, int]] = {"free": 1, "starter": 5, "pro": 25, "enterprise": 250}

# Recipients per account per UTC day (enforced by the relay); a credential's own limits may not exceed it.
DEFAULT_PLAN_DAILY_QUOTAS: Final[dict[str, int]] = {"free": 200, "starter": 10000, "pro": 100000, "enterprise": 1000000}

DEFAULT_MAX_DOMAINS: Final = 1000  # domains (pending or verified) one account may hold, whatever its plan


def is_known_plan(plan: str) -> bool:
    return plan in PLANS


def may_add_active_credential(plan: str, active_now: int, limits: dict[str, int]) -> bool:
    """True when one more active credential stays within the plan's limit (unknown plans allow none)."""
    return active_now + 1 <= limits.get(plan, 0)


def may_add_domain(live_domains: int, max_domains: int) -> bool:
    """True when one more domain stays within the per-account cap (checked under the account row lock)."""
    return live_domains + 1 <= max_domains

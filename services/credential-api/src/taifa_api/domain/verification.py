"""The DNS TXT record that proves control of a domain."""

from __future__ import annotations

import enum
import secrets
from datetime import datetime, timedelta
from typing import Final

RECORD_TYPE: Final = "TXT"
RECORD_LABEL: Final = "_taifa"
VALUE_PREFIX: Final = "taifa-verification="


def record_name(domain: str) -> str:
    return f"{RECORD_LABEL}.{domain}"


def new_record_value() -> str:
    """A fresh, unguessable verification value (public once published in DNS, so not a secret)."""
    return VALUE_PREFIX + secrets.token_urlsafe(24)


def txt_proves_control(txt_strings: list[str], expected_value: str) -> bool:
    """True when one of the TXT record values is exactly the expected value (surrounding spaces ignored)."""
    return any(value.strip() == expected_value for value in txt_strings)


# --- failed verifications ----------------------------------------------------------------------------------

FAILURE_EVENT_INTERVAL: Final = timedelta(hours=1)


def should_record_failure(
    *, reason: str, previous_reason: str | None, previous_recorded_at: datetime | None, now: datetime
) -> bool:
    """A `DomainVerificationFailed` is appended at most once an hour per domain, or at once when the reason changes.

    Every append takes the event store's global append lock, so a client polling verify in a loop must not
    turn each poll into an event.
    """
    if previous_recorded_at is None or reason != previous_reason:
        return True
    return now - previous_recorded_at >= FAILURE_EVENT_INTERVAL


# --- re-verification of verified domains -------------------------------------------------------------------


class Recheck(enum.Enum):
    """What one re-check of a verified domain's TXT record does to the domain."""

    CONFIRMED = "confirmed"  # the record is there: clear any missing clock
    START_CLOCK = "start_clock"  # first check that found it missing: remember since when
    STILL_MISSING = "still_missing"  # missing (or unknown) within the grace period: nothing changes
    RELEASE = "release"  # missing for the whole grace period: release the domain


def recheck_outcome(
    *,
    found: bool,
    conclusive: bool,
    missing_since: datetime | None,
    now: datetime,
    grace: timedelta,
) -> Recheck:
    """Decide from one lookup. `conclusive` is False when DNS gave no answer at all (timeout, SERVFAIL): an
    outage of our resolver never starts the clock, and releases nothing while it lasts less than twice the grace
    period: the release needs a lookup that shows the record missing. A clock that a provably missing record
    (NXDOMAIN, no TXT, wrong value) started keeps running, though, so a lame delegation cannot hold a name
    forever: after twice the grace period without a conclusive answer, the name is released."""
    if found:
        return Recheck.CONFIRMED
    if missing_since is None:
        return Recheck.START_CLOCK if conclusive else Recheck.STILL_MISSING
    missing_for = now - missing_since
    if missing_for >= grace and (conclusive or missing_for >= 2 * grace):
        return Recheck.RELEASE
    return Recheck.STILL_MISSING

"""The rules of a usage query (docs/api.md, "Usage"): which time range and buckets a request asks for, and the
series that answers it, with every bucket of the range present (zeros included).

The read model holds hourly windows (the relay's counts, flushed through Kafka by the projector); a bucket is an
hour or a UTC day, aligned to the hour / 00:00 UTC, and covers the windows that start in it. A bucket belongs to
the answer when it overlaps `[from, to)`, so the first and last buckets may reach outside the range.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from taifa_api.domain.errors import InvalidRequest

Granularity = Literal["hour", "day"]
GRANULARITIES: Final[tuple[str, ...]] = ("hour", "day")
STEP: Final[dict[str, timedelta]] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
DEFAULT_SPAN: Final = timedelta(hours=24)
MAX_SPAN: Final = timedelta(days=90)
QUERY_PARAMETERS: Final[frozenset[str]] = frozenset({"from", "to", "granularity"})
# Far enough from datetime's limits that aligning and stepping never overflow.
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9000, 1, 1, tzinfo=UTC)

# RFC 3339 date-time (section 5.6): a full date, a time with seconds, an offset ("Z" or +hh:mm). Nothing else
# that Python's parser would take (a bare date, no offset, a week date, unix seconds) is accepted.
RFC3339_PATTERN: Final = r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
_RFC3339: Final = re.compile(RFC3339_PATTERN, re.ASCII)


@dataclass(frozen=True)
class UsageRange:
    """A validated query: buckets of `granularity` from `first` (aligned) while they start before `end`."""

    first: datetime
    end: datetime
    granularity: Granularity

    def bucket_starts(self) -> list[datetime]:
        step = STEP[self.granularity]
        starts, start = [], self.first
        while start < self.end:
            starts.append(start)
            start += step
        return starts

    def last_bucket_end(self) -> datetime:
        """Where the last bucket ends: a bucket holds its whole hour / UTC day at either end of the range (the
        first begins at or before `first`, the last may end after `end`)."""
        starts = self.bucket_starts()
        return starts[-1] + STEP[self.granularity]


@dataclass
class Counts:
    """One bucket's totals."""

    messages: int = 0
    recipients: int = 0
    bytes: int = 0
    auth_successes: int = 0
    auth_failures: int = 0
    refused: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Bucket:
    start: datetime
    counts: Counts


def utc_in_range(moment: datetime) -> datetime | None:
    """`moment` in UTC when it lies between 1970 and 9000 (EARLIEST, LATEST), else None: also for a time within a
    day of year 1 or 9999, which has no UTC value at all."""
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        return None
    return utc if EARLIEST <= utc < LATEST else None


def parse_rfc3339(value: str, name: str) -> datetime:
    """`value` as an aware UTC datetime; InvalidRequest (naming the parameter, never echoing it) otherwise."""
    match = _RFC3339.match(value)
    if match is None:
        raise InvalidRequest(f"{name}: an RFC 3339 date-time with an offset, e.g. 2026-11-28T00:00:00Z.")
    date, time, fraction, offset = match.groups()
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    zone = "+00:00" if offset in ("Z", "z") else offset
    try:
        parsed = datetime.fromisoformat(f"{date}T{time}.{micro}{zone}")
    except ValueError:
        raise InvalidRequest(f"{name}: not a valid date-time.") from None
    utc = utc_in_range(parsed)
    if utc is None:
        raise InvalidRequest(f"{name}: must lie between 1970 and 9000.")
    return utc


def align(moment: datetime, granularity: Granularity) -> datetime:
    """The start of the hour / UTC day holding `moment`."""
    moment = moment.astimezone(UTC)
    if granularity == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def usage_range(from_: str | None, to: str | None, granularity: str | None, now: datetime) -> UsageRange:
    """The range a request asks for: default `to` now, `from` 24 hours before `to`, hourly. `from` < `to` and at
    most 90 days apart, else InvalidRequest (422)."""
    if granularity is None:
        granularity = "hour"
    if granularity not in GRANULARITIES:
        raise InvalidRequest("granularity: one of hour, day.")
    end = parse_rfc3339(to, "to") if to is not None else now.astimezone(UTC)
    start = parse_rfc3339(from_, "from") if from_ is not None else end - DEFAULT_SPAN
    if start >= end:
        raise InvalidRequest("from: must be before to.")
    if end - start > MAX_SPAN:
        raise InvalidRequest("from, to: at most 90 days apart.")
    unit: Granularity = "hour" if granularity == "hour" else "day"
    return UsageRange(first=align(start, unit), end=end, granularity=unit)


def unknown_parameters(names: Iterable[str]) -> list[str]:
    """The query parameters a usage request may not carry (anything but from, to, granularity)."""
    return sorted(set(names) - QUERY_PARAMETERS)


def add_window(counts: Counts, row: Mapping[str, object]) -> None:
    """Add one read-model aggregate (`messages`, ..., `refused`: reason -> n) to a bucket's totals."""
    for name in ("messages", "recipients", "bytes", "auth_successes", "auth_failures"):
        setattr(counts, name, getattr(counts, name) + int(str(row.get(name) or 0)))
    refused = row.get("refused") or {}
    if isinstance(refused, Mapping):
        for reason, n in refused.items():
            counts.refused[str(reason)] = counts.refused.get(str(reason), 0) + int(str(n))


def account_totals(per_credential: Iterable[Mapping[datetime, Counts]]) -> dict[datetime, Counts]:
    """The sum of several credentials' buckets."""
    totals: dict[datetime, Counts] = {}
    for buckets in per_credential:
        for start, counts in buckets.items():
            add_window(totals.setdefault(start, Counts()), counts.__dict__)
    return totals


def series(usage_range_: UsageRange, totals: Mapping[datetime, Counts]) -> list[Bucket]:
    """Every bucket of the range, oldest first, with its totals or zeros."""
    return [Bucket(start, totals.get(start) or Counts()) for start in usage_range_.bucket_starts()]

"""The rules of a usage query (taifa_api.domain.usage): RFC 3339 only, the 90-day bound, aligned buckets with zeros."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from taifa_api.domain.errors import InvalidRequest
from taifa_api.domain.usage import Counts, account_totals, parse_rfc3339, series, usage_range

NOW = datetime(2026, 11, 28, 6, 40, 12, tzinfo=UTC)


def test_the_default_range_is_the_last_24_hours_hourly_ending_with_the_current_hour() -> None:
    wanted = usage_range(None, None, None, NOW)
    starts = wanted.bucket_starts()
    assert wanted.granularity == "hour"
    assert starts[0] == datetime(2026, 11, 27, 6, tzinfo=UTC)
    assert starts[-1] == datetime(2026, 11, 28, 6, tzinfo=UTC)
    assert len(starts) == 25


def test_days_are_utc_days_whatever_offset_the_bounds_carry() -> None:
    wanted = usage_range("2026-11-20T01:00:00+03:00", "2026-11-21T00:00:00-05:00", "day", NOW)
    assert wanted.bucket_starts() == [
        datetime(2026, 11, 19, tzinfo=UTC),
        datetime(2026, 11, 20, tzinfo=UTC),
        datetime(2026, 11, 21, tzinfo=UTC),
    ]


def test_the_last_bucket_ends_on_its_hour_or_day_whatever_to_is() -> None:
    assert usage_range(None, None, None, NOW).last_bucket_end() == datetime(2026, 11, 28, 7, tzinfo=UTC)
    days = usage_range("2026-11-19T12:00:00Z", "2026-11-20T12:00:00Z", "day", NOW)
    assert days.last_bucket_end() == datetime(2026, 11, 21, tzinfo=UTC)
    exact = usage_range("2026-11-19T00:00:00Z", "2026-11-21T00:00:00Z", "day", NOW)
    assert exact.last_bucket_end() == datetime(2026, 11, 21, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    ["2026-11-20T00:00:00", "2026-11-20", "1763596800", "2026-W47-4T00:00:00Z", "2026-11-20T00:00Z", "", "now"],
)
def test_only_rfc3339_date_times_with_an_offset_are_accepted(value: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_rfc3339(value, "from")
    assert value not in refused.value.detail or not value  # the input is never echoed


def test_fractions_and_lowercase_separators_are_rfc3339_too() -> None:
    assert parse_rfc3339("2026-11-20t01:02:03.123456789z", "to") == datetime(2026, 11, 20, 1, 2, 3, 123456, tzinfo=UTC)


@pytest.mark.parametrize("value", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00", "9000-01-01T00:00:00Z"])
def test_times_without_a_utc_value_or_outside_1970_to_9000_are_refused(value: str) -> None:
    with pytest.raises(InvalidRequest, match="between 1970 and 9000"):
        parse_rfc3339(value, "from")


def test_ranges_are_at_most_90_days_and_from_is_before_to() -> None:
    usage_range("2026-08-22T00:00:00Z", "2026-11-20T00:00:00Z", "hour", NOW)
    for from_, to in (("2026-08-21T23:59:59Z", "2026-11-20T00:00:00Z"), ("2026-11-20T00:00:00Z",) * 2):
        with pytest.raises(InvalidRequest):
            usage_range(from_, to, "hour", NOW)
    with pytest.raises(InvalidRequest):
        usage_range(None, None, "minute", NOW)


def test_every_bucket_is_present_and_credentials_add_up() -> None:
    wanted = usage_range("2026-11-20T00:00:00Z", "2026-11-20T03:00:00Z", None, NOW)
    hour = datetime(2026, 11, 20, 1, tzinfo=UTC)
    first = {hour: Counts(messages=2, refused={"limits": 1})}
    second = {hour: Counts(messages=3, refused={"limits": 2, "quota": 1})}
    buckets = series(wanted, account_totals([first, second]))
    assert [b.start for b in buckets] == [hour - timedelta(hours=1), hour, hour + timedelta(hours=1)]
    assert [b.counts.messages for b in buckets] == [0, 5, 0]
    assert buckets[1].counts.refused == {"limits": 3, "quota": 1}

"""Pure rules of domain release and lists: list cursors, the failed-verification event throttle, and the
re-verification clock driven through a fake of our DNS port (no PostgreSQL, no network)."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from taifa_api.application.ports import DnsAnswer
from taifa_api.application.recheck import Observation, observe
from taifa_api.domain import paging, verification
from taifa_api.domain.errors import InvalidCursor
from taifa_api.domain.models import DomainRecord
from taifa_api.domain.plans import may_add_domain
from taifa_api.domain.verification import Recheck

T0 = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
GRACE = timedelta(hours=72)


# --- cursors -------------------------------------------------------------------------------------------------


@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 1, 1), timezones=st.just(UTC)),
    st.uuids(),
    st.sampled_from(["credentials", "domains"]),
)
def test_a_cursor_decodes_to_the_position_it_was_made_from(created_at, item_id, kind) -> None:
    position = paging.Position(created_at, item_id)
    cursor = paging.encode_cursor(kind, position)
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert paging.decode_cursor(kind, cursor) == position


def _tampered() -> list[str]:
    good = paging.encode_cursor("domains", paging.Position(T0, uuid.uuid4()))
    raw = base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)).decode()
    tag, micros, item, check = raw.split(".")
    forged = f"{tag}.{int(micros) - 1}.{item}.{check}"  # an earlier position with the old checksum
    return [
        good[:-1],
        good + "A",
        good[:5] + ("B" if good[5] != "B" else "C") + good[6:],
        base64.urlsafe_b64encode(forged.encode()).decode().rstrip("="),
        base64.urlsafe_b64encode(b"d.1.2.3").decode(),
        "not a cursor",
        "%%%",
        "é",
        "A" * 500,
        "",
    ]


@pytest.mark.parametrize("cursor", _tampered())
def test_a_tampered_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor) as refused:
        paging.decode_cursor("domains", cursor)
    assert refused.value.code == "validation_error"


def test_a_cursor_of_one_list_is_refused_by_the_other() -> None:
    cursor = paging.encode_cursor("domains", paging.Position(T0, uuid.uuid4()))
    with pytest.raises(InvalidCursor):
        paging.decode_cursor("credentials", cursor)


def test_the_domain_cap_allows_up_to_the_limit_and_no_more() -> None:
    assert may_add_domain(999, 1000)
    assert not may_add_domain(1000, 1000)


# --- failed verifications: at most one event an hour unless the reason changes ------------------------------


def test_repeated_failed_verifies_record_one_event_an_hour() -> None:
    reason = "no DNS record at _taifa.example.com"
    recorded_at = None
    recorded = []
    for minute in range(0, 181, 5):  # a client polling every five minutes for three hours
        now = T0 + timedelta(minutes=minute)
        if verification.should_record_failure(
            reason=reason, previous_reason=reason if recorded_at else None, previous_recorded_at=recorded_at, now=now
        ):
            recorded_at = now
            recorded.append(minute)
    assert recorded == [0, 60, 120, 180]


def test_a_new_failure_reason_is_recorded_at_once() -> None:
    assert verification.should_record_failure(
        reason="TXT record _taifa.example.com does not hold the value",
        previous_reason="no DNS record at _taifa.example.com",
        previous_recorded_at=T0,
        now=T0 + timedelta(seconds=1),
    )


# --- re-verification through a fake DNS port -----------------------------------------------------------------


class FakeDns:
    """Our DNS port (`TxtLookup`) answering from a dict; a name mapped to None times out."""

    def __init__(self) -> None:
        self.zone: dict[str, list[str] | None] = {}
        self.asked: list[str] = []

    async def lookup_txt(self, name: str) -> DnsAnswer:
        self.asked.append(name)
        if name not in self.zone:
            return DnsAnswer(failure=f"no DNS record at {name}")
        values = self.zone[name]
        if values is None:
            return DnsAnswer(failure=f"DNS lookup of {name} timed out", conclusive=False)
        return DnsAnswer(values=values)


def _domain(missing_since: datetime | None = None) -> DomainRecord:
    return DomainRecord(
        domain_id=uuid.uuid4(),
        account_id=uuid.uuid4(),
        name="example.com",
        status="verified",
        status_reason=None,
        verification_name="_taifa.example.com",
        verification_value="taifa-verification=abc",
        created_at=T0,
        verified_at=T0,
        verification_missing_since=missing_since,
    )


def _run_days(dns: FakeDns, days: int, *, missing_since: datetime | None = None) -> list[Recheck]:
    """Daily checks from T0 with the decision's effect on the clock applied as the write side does."""
    decisions = []
    for day in range(days):
        now = T0 + timedelta(days=day)
        domain = _domain(missing_since)
        seen = asyncio.run(observe(dns.lookup_txt, domain))
        decision = verification.recheck_outcome(
            found=seen.found, conclusive=seen.conclusive, missing_since=missing_since, now=now, grace=GRACE
        )
        decisions.append(decision)
        if decision is Recheck.CONFIRMED:
            missing_since = None
        elif decision is Recheck.START_CLOCK:
            missing_since = now
        elif decision is Recheck.RELEASE:
            break
    return decisions


def test_a_record_missing_for_72_hours_releases_the_domain_on_the_fourth_daily_check() -> None:
    dns = FakeDns()  # the record is gone: NXDOMAIN
    assert _run_days(dns, 10) == [Recheck.START_CLOCK, Recheck.STILL_MISSING, Recheck.STILL_MISSING, Recheck.RELEASE]
    assert dns.asked == ["_taifa.example.com"] * 4


def test_the_record_coming_back_clears_the_clock() -> None:
    dns = FakeDns()
    assert _run_days(dns, 2) == [Recheck.START_CLOCK, Recheck.STILL_MISSING]
    dns.zone["_taifa.example.com"] = ["v=spf1 -all", "taifa-verification=abc"]
    assert _run_days(dns, 1, missing_since=T0 - timedelta(days=2)) == [Recheck.CONFIRMED]


def test_a_wrong_value_counts_as_missing() -> None:
    dns = FakeDns()
    dns.zone["_taifa.example.com"] = ["taifa-verification=someone-else"]
    assert asyncio.run(observe(dns.lookup_txt, _domain())) == Observation(found=False, conclusive=True)


def test_a_resolver_outage_never_starts_the_clock_and_releases_only_after_twice_the_grace_period() -> None:
    dns = FakeDns()
    dns.zone["_taifa.example.com"] = None  # timeouts
    assert set(_run_days(dns, 10)) == {Recheck.STILL_MISSING}
    # A clock a missing record started keeps running (a lame delegation cannot hold a name forever), but without
    # a lookup that shows the record missing the release waits for twice the grace period.
    started = T0 - timedelta(days=2)
    assert _run_days(dns, 5, missing_since=started) == [Recheck.STILL_MISSING] * 4 + [Recheck.RELEASE]


def test_one_missing_answer_then_our_resolver_failing_releases_nothing_at_the_grace_period() -> None:
    # A flap (one NXDOMAIN), then our resolver times out for days: no lookup after the first showed the record
    # missing, so nothing is released at 72 h; the next answer decides.
    dns = FakeDns()
    assert _run_days(dns, 1) == [Recheck.START_CLOCK]
    dns.zone["_taifa.example.com"] = None
    assert _run_days(dns, 3, missing_since=T0 - timedelta(days=1)) == [Recheck.STILL_MISSING] * 3
    dns.zone["_taifa.example.com"] = ["taifa-verification=abc"]
    assert _run_days(dns, 1, missing_since=T0 - timedelta(days=4)) == [Recheck.CONFIRMED]
    del dns.zone["_taifa.example.com"]  # or shown missing, past the grace period: released
    assert _run_days(dns, 1, missing_since=T0 - timedelta(days=4)) == [Recheck.RELEASE]

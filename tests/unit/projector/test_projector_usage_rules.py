"""Usage windows (issue 16): the GREATEST rule, the flusher and the applier, on fakes of the ports."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from taifa_events import usage
from taifa_events.signing import signature_of
from taifa_events.usage import QuotaNotice, QuotaReached, UsageWindow
from taifa_projector.application.ports import Record
from taifa_projector.application.usage import REASON_INVALID_USAGE, UsageApplier, UsageFlusher
from taifa_projector.domain.usage import merge_window

from tests.unit.projector.fakes import KEYRING, InMemoryDeadLetters
from tests.unit.projector.usage_fakes import InMemoryUsageCounters, InMemoryUsageStore, InMemoryUsageTopic

CRED = uuid4()
ACCOUNT = uuid4()
SECRET = uuid4()
HOUR = datetime(2026, 11, 28, 6, tzinfo=UTC)
WINDOW = int(HOUR.timestamp())


def snapshot(messages: int, at_minute: int, ip: str, *, refused: dict[str, int] | None = None) -> UsageWindow:
    used = HOUR + timedelta(minutes=at_minute)
    return UsageWindow(
        credential_id=CRED,
        account_id=ACCOUNT,
        window_start=HOUR,
        messages=messages,
        recipients=2 * messages,
        bytes=100 * messages,
        auth_successes=messages,
        refused=refused or {},
        last_used_at=used,
        last_used_ip=ip,
        secrets_last_used={SECRET: used},
        reported_at=used,
    )


def apply_all(windows: list[UsageWindow]) -> UsageWindow:
    stored = None
    for w in windows:
        stored = merge_window(stored, w)
    assert stored is not None
    return stored


def test_redelivered_replayed_or_out_of_order_windows_give_the_same_totals() -> None:
    snapshots = [
        snapshot(1, 5, "192.0.2.1"),
        snapshot(3, 20, "192.0.2.2", refused={"policy": 1}),
        snapshot(7, 40, "192.0.2.3", refused={"policy": 1, "quota": 2}),
    ]
    expected = apply_all(snapshots)
    assert (expected.messages, expected.recipients, expected.refused) == (7, 14, {"policy": 1, "quota": 2})
    assert expected.last_used_ip == "192.0.2.3"
    for order in itertools.permutations(snapshots):
        assert apply_all(list(order)) == expected
    assert apply_all(snapshots + snapshots) == expected  # every record redelivered, then the topic replayed


async def test_two_pods_increments_add_up_before_the_snapshot() -> None:
    counters, topic = InMemoryUsageCounters(), InMemoryUsageTopic()
    counters.count(CRED, WINDOW, ACCOUNT, messages=2, recipients=3)  # pod A
    counters.count(CRED, WINDOW, ACCOUNT, messages=1, recipients=4, **{"refused:limits": 1})  # pod B
    await UsageFlusher(counters, topic).flush(HOUR + timedelta(minutes=30))
    store = InMemoryUsageStore()
    await store.apply_windows([r for r in topic.records if isinstance(r, UsageWindow)])
    (window,) = store.windows.values()
    assert (window.messages, window.recipients, window.refused) == (3, 7, {"limits": 1})


async def test_a_new_generation_of_an_hour_is_kept_beside_the_old_one_and_each_merges_on_its_own() -> None:
    store = InMemoryUsageStore()
    before_loss = snapshot(5, 10, "192.0.2.1")
    after_loss = snapshot(2, 40, "192.0.2.2").model_copy(update={"generation": "relay.4"})
    await store.apply_windows([before_loss, after_loss, snapshot(3, 20, "192.0.2.1")])
    await store.apply_windows([after_loss.model_copy(update={"messages": 4})])
    by_generation = {w.generation: w.messages for w in store.windows.values()}
    assert by_generation == {"": 5, "relay.4": 4}


async def test_an_open_window_stays_pending_and_a_closed_one_is_forgotten_once_published() -> None:
    counters, topic = InMemoryUsageCounters(), InMemoryUsageTopic()
    counters.count(CRED, WINDOW, ACCOUNT, messages=1)
    flusher = UsageFlusher(counters, topic, grace_seconds=60)
    await flusher.flush(HOUR + timedelta(minutes=59))
    assert await counters.pending() == [(CRED, WINDOW)]
    counters.count(CRED, WINDOW, ACCOUNT, messages=1)  # a late count inside the grace
    topic.fail = True
    with pytest.raises(ConnectionError):
        await flusher.flush(HOUR + timedelta(minutes=62))
    assert await counters.pending() == [(CRED, WINDOW)]  # not published: not forgotten
    topic.fail = False
    await flusher.flush(HOUR + timedelta(minutes=62))
    assert await counters.pending() == []
    assert [r.messages for r in topic.records if isinstance(r, UsageWindow)] == [1, 2]


async def test_quota_notices_become_records_and_are_dropped_only_after_publishing() -> None:
    counters, topic = InMemoryUsageCounters(), InMemoryUsageTopic()
    notice = QuotaNotice(
        account_id=ACCOUNT, credential_id=CRED, day="20261128", percent=80, count=160, quota=200, at=HOUR
    )
    counters.notices = [notice.model_dump_json().encode(), b"damaged"]
    topic.fail = True
    with pytest.raises(ConnectionError):
        await UsageFlusher(counters, topic).flush(HOUR)
    assert len(counters.notices) == 2
    topic.fail = False
    await UsageFlusher(counters, topic).flush(HOUR)
    assert topic.records == [QuotaReached(**notice.model_dump())]
    assert counters.notices == []


def _record(value: bytes, offset: int, *, signed: bool = True) -> Record:
    signature = signature_of(KEYRING.headers(value)) if signed else None
    return Record(usage.USAGE_TOPIC, 0, offset, str(CRED).encode(), value, None, signature)


async def test_unsigned_or_undecodable_usage_records_are_dead_lettered_never_applied() -> None:
    store, letters = InMemoryUsageStore(), InMemoryDeadLetters()
    good = usage.encode_usage_record(snapshot(2, 10, "192.0.2.9"))
    applied, rejected = await UsageApplier(store, letters, KEYRING).apply(
        [_record(good, 0, signed=False), _record(b'{"type":"UsageWindow","data":{}}', 1), _record(good, 2)]
    )
    assert (applied, rejected) == (1, 2)
    assert [d.reason for d in letters.sent] == ["unsigned", REASON_INVALID_USAGE]
    (window,) = store.windows.values()
    assert window.messages == 2

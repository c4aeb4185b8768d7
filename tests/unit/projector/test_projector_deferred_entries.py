"""Case E10 (docs/testing.md): rebuilds build each credential's cache entry once, from its final row
(`ReadSideFold(deferred_auth=True)` and `settle_auth`, issue 18), instead of after every event: the entries must be
those of the event-by-event fold, in any order of arrival (parked deactivations, an account's plan learnt before or
after its credentials)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from taifa_events import AccountCreated, make_envelope
from taifa_projector.domain.fold import ReadSideFold

from tests.unit.projector.lifecycle_commands import command_lists, events_of


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command_lists, st.randoms(use_true_random=False), st.booleans(), st.sampled_from(["free", "pro"]))
def test_entries_built_from_the_final_rows_equal_those_built_event_by_event(commands, rnd, shuffle, plan) -> None:
    events = events_of(commands)
    accounts = sorted({e.data.account_id for e in events})
    created = datetime(2026, 11, 23, tzinfo=UTC)
    order = list(events)
    for i, account in enumerate(accounts):  # each account's creation somewhere in the stream (another topic)
        data = AccountCreated(account_id=account, name="Example", plan=plan, created_at=created)
        account_event = make_envelope(data, stream_version=1, position=len(events) + i + 1, correlation_id="t")
        order.insert(rnd.randrange(len(order) + 1), account_event)
    if shuffle:  # any order of arrival: creations after their later events park those events
        rnd.shuffle(order)

    event_by_event = ReadSideFold()
    event_by_event.apply_all(order)
    deferred = ReadSideFold(deferred_auth=True)
    deferred.apply_all(order)
    deferred.settle_auth()

    assert deferred.auth == event_by_event.auth
    assert deferred.credentials == event_by_event.credentials
    assert deferred.plans == event_by_event.plans

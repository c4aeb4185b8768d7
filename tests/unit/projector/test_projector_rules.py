"""The projection rules: position-conditional, idempotent, order-tolerant (no I/O)."""

from __future__ import annotations

import itertools
import random

from taifa_projector.domain.fold import ReadSideFold, cache_writes, latest_auth_entries
from taifa_projector.domain.model import TOMBSTONE_HASH

from tests.unit.projector.projector_events import Domain


def fold(events) -> ReadSideFold:
    projection = ReadSideFold()
    projection.apply_all(events)
    return projection


def state(projection: ReadSideFold):
    return (projection.credentials, projection.domains, projection.auth, projection.parked)


def test_created_credential_is_an_active_row_and_an_active_cache_entry() -> None:
    d = Domain()
    created = d.created(1)
    p = fold([created])
    row = p.credentials[created.data.credential_id]
    assert row.is_active and row.deactivated_at is None and row.position == 1
    assert row.username == d.username and row.domain == d.name
    entry = p.auth[d.username.lower()]
    assert entry.active and entry.secret_hash == created.data.secret_hash and entry.position == 1


def test_same_events_twice_change_nothing() -> None:
    d = Domain()
    created = d.created(1)
    events = [d.registered(1), d.verified(2), created, d.deactivated(created, 4)]
    once = fold(events)
    assert state(fold(events + events)) == state(once)


def test_older_event_after_newer_changes_nothing() -> None:
    d = Domain()
    created = d.created(5)
    gone = d.deactivated(created, 9)
    p = fold([created, gone, created])
    row = p.credentials[created.data.credential_id]
    assert not row.is_active and row.position == 9
    assert not p.auth[d.username.lower()].active


def test_deactivate_a_then_create_b_for_one_username_in_both_orders() -> None:
    d = Domain()
    a = d.created(1)
    a_gone = d.deactivated(a, 2)
    b = d.created(3)
    for order in ([a, a_gone, b], [a, b, a_gone], [b, a_gone, a], [a_gone, b, a]):
        p = fold(order)
        entry = p.auth[d.username.lower()]
        assert entry.active and entry.credential_id == b.data.credential_id and entry.position == 3, order
        assert p.credentials[b.data.credential_id].is_active


def test_deactivation_before_its_creation_is_parked_then_applied() -> None:
    d = Domain()
    created = d.created(1)
    gone = d.deactivated(created, 2)
    p = fold([gone])
    assert created.data.credential_id not in p.credentials
    assert list(p.parked) == [created.data.credential_id]
    assert not p.auth[d.username.lower()].active
    p.apply(created)
    row = p.credentials[created.data.credential_id]
    assert not row.is_active and row.deactivated_at == gone.data.deactivated_at and row.position == 2
    assert p.parked == {} and p.newly_parked == {}
    # The late creation never resurrects the username in the cache.
    assert not p.auth[d.username.lower()].active


def test_tombstone_keeps_no_secret() -> None:
    d = Domain()
    created = d.created(1)
    entry = latest_auth_entries([created, d.deactivated(created, 2)])[d.username.lower()]
    assert not entry.active and entry.secret_hash == TOMBSTONE_HASH and entry.domain == d.name


def test_domain_lifecycle_and_failed_recheck_never_unverifies() -> None:
    d = Domain()
    p = fold([d.registered(1), d.verification_failed(2)])
    row = p.domains[d.domain_id]
    assert row.status == "pending" and row.status_reason == "TXT record not found"
    p.apply(d.verified(3, version=3))
    p.apply(d.verification_failed(4, version=4))
    row = p.domains[d.domain_id]
    assert row.status == "verified" and row.status_reason is None and row.position == 4


def test_any_interleaving_of_streams_gives_the_same_state() -> None:
    # Events of different streams may interleave in any way; each stream keeps its own order.
    streams = []
    position = itertools.count(1)
    for _ in range(6):
        d = Domain()
        a = d.created(next(position))
        streams.append([d.registered(next(position)), a, d.deactivated(a, next(position)), d.created(next(position))])
    reference = state(fold(sorted((e for s in streams for e in s), key=lambda e: e.position)))
    rng = random.Random(7)
    for _ in range(50):
        queues = [list(s) for s in streams]
        merged = []
        while any(queues):
            queue = rng.choice([q for q in queues if q])
            merged.append(queue.pop(0))
            if rng.random() < 0.2:
                merged.append(merged[rng.randrange(len(merged))])  # a redelivery of something already seen
        assert state(fold(merged)) == reference


def test_cache_fields_are_exactly_what_the_shared_format_writes() -> None:
    from taifa_projector.adapters.redis_cache import ENTRY_FIELDS, entry_values, to_cache_entry

    d = Domain()
    created = d.created(7)
    for entry in (
        latest_auth_entries([created]).values(),
        latest_auth_entries([created, d.deactivated(created, 8)]).values(),
    ):
        (entry,) = entry
        assert dict(zip(ENTRY_FIELDS, entry_values(entry), strict=True)) == to_cache_entry(entry).to_redis()


def test_cache_writes_are_the_folds_changes_plus_the_redelivered_events() -> None:
    a, b = Domain(), Domain()
    a_created = a.created(1)
    b_created = b.created(2)
    # Only b's creation is new to this batch; a's deactivation was applied before (a redelivery after a
    # crash between the PostgreSQL commit and the Redis write) and must still reach the cache: its committed
    # entry, which the store loads into the batch's fold.
    a_deactivated = a.deactivated(a_created, 3)
    committed = fold([a_created, a_deactivated])
    projection = ReadSideFold(credentials=dict(committed.credentials), auth=dict(committed.auth))
    projection.apply_all([b_created])
    writes = cache_writes(projection, [a_deactivated])
    assert set(writes) == {a.username.lower(), b.username.lower()}
    assert writes[b.username.lower()].active and not writes[a.username.lower()].active
    # Nothing new and nothing redelivered: nothing to write.
    assert cache_writes(ReadSideFold(), []) == {}

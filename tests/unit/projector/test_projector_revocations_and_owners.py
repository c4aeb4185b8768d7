"""Pure rules of the hardening: revocations from the event stream, released domains, domain owners,
the quarantine of refused deactivations, and which Redis failures are transient (no I/O)."""

from __future__ import annotations

import redis.exceptions
from taifa_projector.adapters.driver_errors import redis_errors
from taifa_projector.application.ports import StoreError
from taifa_projector.application.retry import is_transient
from taifa_projector.application.undecodable import declared_position
from taifa_projector.domain.fold import ReadSideFold, cache_writes, owners_of, revocations
from taifa_projector.domain.model import TOMBSTONE_HASH, domain_owner_for, quarantined

from tests.unit.projector.projector_events import Domain


def fold(events) -> ReadSideFold:
    projection = ReadSideFold()
    projection.apply_all(events)
    return projection


def test_deactivation_and_new_credential_for_one_username_in_one_batch_revoke_the_old_credential() -> None:
    d = Domain()
    a = d.created(1)
    batch = [d.deactivated(a, 2), d.created(3)]
    projection = fold([a])
    projection.changed_auth.clear()
    projection.apply_all(batch)
    # The batch's final cache entry is the new, active credential...
    (entry,) = cache_writes(projection, []).values()
    assert entry.active and entry.credential_id == batch[1].data.credential_id
    # ...and the old credential is revoked all the same, by its id.
    assert revocations(batch) == [(d.username.lower(), a.data.credential_id)]


def test_revocations_are_each_deactivation_once_in_position_order_and_nothing_else() -> None:
    first, second = Domain(), Domain()
    a, b = first.created(1), second.created(2)
    gone_b, gone_a = second.deactivated(b, 4), first.deactivated(a, 3)
    assert revocations([a, b, gone_b, gone_a, gone_b, first.registered(5)]) == [
        (first.username.lower(), a.data.credential_id),
        (second.username.lower(), b.data.credential_id),
    ]
    assert revocations([a, b, first.verified(6)]) == []


def test_released_domain_row_is_final_and_keeps_its_release_time() -> None:
    d = Domain()
    p = fold([d.registered(1), d.verified(2), d.released(3, reason="verification_lost")])
    row = p.domains[d.domain_id]
    assert row.status == "released" and row.position == 3 and row.status_reason == "verification_lost"
    assert row.released_at is not None and row.verified_at is not None
    # Nothing after the release changes the row, not even its position; an older event neither.
    p.apply(d.verified(4, version=4))
    p.apply(d.verification_failed(5, version=5))
    p.apply(d.verified(2))
    assert p.domains[d.domain_id] == row


def test_release_before_registration_is_parked_then_applied() -> None:
    d = Domain()
    p = fold([d.released(3), d.verified(2)])
    assert d.domain_id not in p.domains and len(p.parked[d.domain_id]) == 2
    p.apply(d.registered(1))
    assert p.domains[d.domain_id].status == "released" and p.parked == {}


def test_owner_keys_follow_verification_and_release_but_never_a_pending_release() -> None:
    owner, other = Domain(), Domain()
    other.name = owner.name
    p = fold([owner.registered(1), owner.verified(2), other.registered(3), other.released(4, version=2)])
    # The other account's pending registration, released, says nothing about the name's owner.
    assert p.changed_owners() == [domain_owner_for(p.domains[owner.domain_id])]
    assert domain_owner_for(p.domains[other.domain_id]) is None
    (held,) = p.changed_owners()
    assert held.holds and held.account_id == owner.account_id and held.position == 2
    p.apply(owner.released(5))
    (gone,) = owners_of([p.domains[owner.domain_id], p.domains[other.domain_id]])
    assert not gone.holds and gone.account_id == owner.account_id and gone.position == 5


def test_owner_changes_come_in_position_order() -> None:
    first, second = Domain(), Domain()
    second.name = first.name
    p = fold([first.registered(1), first.verified(2), first.released(3), second.registered(4), second.verified(5)])
    assert [(o.account_id, o.holds) for o in p.changed_owners()] == [
        (first.account_id, False),
        (second.account_id, True),
    ]


def test_a_quarantined_credential_is_a_tombstone_but_a_newer_credential_of_its_username_is_not() -> None:
    d = Domain()
    a, b = d.created(1), d.created(5)
    (entry_a,) = fold([a]).auth.values()
    (entry_b,) = fold([b]).auth.values()
    other = Domain()
    (entry_other,) = fold([other.created(2)]).auth.values()
    out = quarantined([entry_a, entry_other], {a.data.credential_id: 3})
    assert out[1] == entry_other
    assert not out[0].active and out[0].secret_hash == TOMBSTONE_HASH and out[0].position == 3
    assert out[0].credential_id == a.data.credential_id
    assert quarantined([entry_b], {a.data.credential_id: 3}) == [entry_b]


def test_position_named_by_an_undecodable_value_is_read_when_it_can_be() -> None:
    assert declared_position(b'{"position": 42, "data": {"x": [}') is None
    assert declared_position(b'{"position": 42, "schema_version": 99}') == 42
    assert declared_position(b'{"position": true}') is None
    assert declared_position(b"[1]") is None
    assert declared_position(b"\xff") is None
    assert declared_position(None) is None


def translated(exc: Exception) -> StoreError:
    """What the Redis adapter reports for a redis-py failure."""
    try:
        with redis_errors:
            raise exc
    except StoreError as reported:
        return reported
    raise AssertionError("not translated")


def test_redis_refusals_are_deterministic_even_inside_a_pipeline_and_server_states_are_transient() -> None:
    annotated = redis.exceptions.ResponseError("x")
    annotated.args = ("Command # 1 (EVALSHA abc 1 k) of pipeline caused error: ('WRONGTYPE Operation',)",)
    assert not is_transient(translated(annotated))
    assert not is_transient(translated(redis.exceptions.OutOfMemoryError("OOM command not allowed when used memory")))
    assert not is_transient(translated(redis.exceptions.ResponseError("ERR Error running script")))
    assert is_transient(
        translated(redis.exceptions.ReadOnlyError("READONLY You can't write against a read only replica."))
    )
    assert is_transient(translated(redis.exceptions.BusyLoadingError("LOADING Redis is loading the dataset in memory")))
    assert is_transient(translated(redis.exceptions.ConnectionError("Connection refused")))

"""The lifecycle fold rules (issue 15): secrets, rotation grace, revocation, suspension, restrictions, and the
format-2 cache entry they give. Pure: no I/O."""

from __future__ import annotations

import json
import uuid

from taifa_events import hash_secret, initial_secret_id
from taifa_events.auth_cache import AuthCacheEntry
from taifa_projector.adapters.redis_cache import ENTRY_FIELDS, entry_values, to_cache_entry
from taifa_projector.domain.fold import ReadSideFold, cache_writes, changes, revocations

from tests.unit.projector.projector_events import (
    Domain,
    at,
    restricted,
    resumed,
    rotated,
    secret_revoked,
    suspended,
)


def fold(events) -> ReadSideFold:
    projection = ReadSideFold()
    projection.apply_all(events)
    return projection


def cached(projection: ReadSideFold, d: Domain) -> AuthCacheEntry:
    entry = projection.auth[d.username.lower()]
    mapping = dict(zip(ENTRY_FIELDS, entry_values(entry), strict=True))
    parsed = AuthCacheEntry.from_redis(mapping)
    assert parsed is not None and parsed.to_redis() == mapping  # the shared format reads exactly what is written
    return parsed


def test_a_created_credential_has_one_secret_named_by_the_event_or_the_derived_id() -> None:
    d = Domain()
    created = d.created(1)
    p = fold([created])
    (secret,) = p.credentials[created.data.credential_id].secrets
    assert secret.secret_id == created.data.secret_id == initial_secret_id(created.data.credential_id)
    entry = cached(p, d)
    assert entry.status == "active" and [s.id for s in entry.secrets] == [secret.secret_id]
    assert entry.secrets[0].expires_at is None and entry.allowed_cidrs == () and entry.expires_at is None


def test_a_rotation_puts_the_new_secret_first_and_ends_the_previous_at_the_grace_end() -> None:
    d = Domain()
    created = d.created(1)
    first = created.data.secret_id
    rotation = rotated(d, created, 2, first, grace=600, secret="new-password")
    p = fold([created, rotation])
    entry = cached(p, d)
    assert [s.id for s in entry.secrets] == [rotation.data.secret_id, first]
    assert entry.secret_hash == hash_secret("new-password") and entry.secrets[1].expires_at == int(at(602).timestamp())
    assert entry.position == 2
    # The relay compares the expiry with its own clock: both work before the grace end, only the new one after.
    assert len(entry.valid_secrets(at(601).timestamp())) == 2
    assert [s.id for s in entry.valid_secrets(at(602).timestamp())] == [rotation.data.secret_id]


def test_a_rotation_with_grace_zero_leaves_the_previous_secret_expired_at_the_rotation() -> None:
    d = Domain()
    created = d.created(1)
    rotation = rotated(d, created, 2, created.data.secret_id, grace=0)
    p = fold([created, rotation])
    entry = cached(p, d)
    # Not even in the cache: a relay whose clock lags the API's cannot accept it.
    assert [s.id for s in entry.secrets] == [rotation.data.secret_id]
    (old,) = (s for s in p.credentials[created.data.credential_id].secrets if s.secret_id != rotation.data.secret_id)
    assert old.expires_at == at(2)


def test_the_cache_holds_at_most_the_two_newest_secrets_and_the_read_model_keeps_all() -> None:
    d = Domain()
    created = d.created(1)
    r1 = rotated(d, created, 2, created.data.secret_id, grace=3600)
    r2 = rotated(d, created, 3, r1.data.secret_id, grace=60)
    p = fold([created, r1, r2])
    assert [s.id for s in cached(p, d).secrets] == [r2.data.secret_id, r1.data.secret_id]
    assert len(p.credentials[created.data.credential_id].secrets) == 3


def test_revoking_the_previous_secret_removes_it_from_the_cache_and_marks_it_revoked() -> None:
    d = Domain()
    created = d.created(1)
    rotation = rotated(d, created, 2, created.data.secret_id, grace=3600)
    p = fold([created, rotation, secret_revoked(d, created, 3, created.data.secret_id)])
    assert [s.id for s in cached(p, d).secrets] == [rotation.data.secret_id]
    old = next(s for s in p.credentials[created.data.credential_id].secrets if s.secret_id == created.data.secret_id)
    assert old.revoked_at == at(3) and old.position == 3


def test_suspend_and_resume_set_the_status_and_keep_the_credential_active() -> None:
    d = Domain()
    created = d.created(1)
    p = fold([created, suspended(d, created, 2, reason="complaints")])
    row = p.credentials[created.data.credential_id]
    assert row.status == "suspended" and row.is_active and row.suspension_reason == "complaints"
    assert row.suspended_at == at(2) and cached(p, d).status == "suspended" and cached(p, d).active
    p.apply(resumed(d, created, 3))
    row = p.credentials[created.data.credential_id]
    assert row.status == "active" and row.suspended_at is None and row.suspension_reason is None
    assert cached(p, d).status == "active"


def test_restrictions_replace_cidrs_expiry_and_limits_with_the_full_new_values() -> None:
    d = Domain()
    created = d.created(1)
    p = fold([created, restricted(d, created, 2, ["203.0.113.0/24", "2001:db8::/48"], 3600, 10, 500)])
    entry = cached(p, d)
    assert entry.allowed_cidrs == ("203.0.113.0/24", "2001:db8::/48") and entry.expires_at == int(at(3602).timestamp())
    assert (entry.limits.messages_per_minute, entry.limits.messages_per_day) == (10, 500)
    p.apply(restricted(d, created, 3))  # [] / null clear
    entry = cached(p, d)
    assert entry.allowed_cidrs == () and entry.expires_at is None and entry.limits.messages_per_day is None


def test_a_deactivated_credential_is_final_and_its_entry_a_tombstone() -> None:
    d = Domain()
    created = d.created(1)
    p = fold([created, d.deactivated(created, 2), suspended(d, created, 3), resumed(d, created, 4),
              rotated(d, created, 5, created.data.secret_id)])  # fmt: skip
    row = p.credentials[created.data.credential_id]
    assert row.status == "deactivated" and row.position == 2 and len(row.secrets) == 1
    entry = cached(p, d)
    assert entry.status == "deactivated" and not entry.active and entry.position == 2


def test_an_older_or_repeated_event_changes_nothing() -> None:
    d = Domain()
    created = d.created(1)
    rotation = rotated(d, created, 2, created.data.secret_id)
    suspension = suspended(d, created, 3)
    p = fold([created, rotation, suspension])
    before = (dict(p.credentials), dict(p.auth))
    p.changed_auth.clear()
    p.apply_all([rotation, suspension, created, restricted(d, created, 3, ["10.0.0.0/8"])])
    assert (p.credentials, p.auth) == before and not p.changed_auth


def test_lifecycle_events_before_the_creation_are_parked_then_applied_in_order() -> None:
    d = Domain()
    created = d.created(1)
    rotation = rotated(d, created, 2, created.data.secret_id, grace=30)
    later = [rotation, suspended(d, created, 3), restricted(d, created, 4, ["198.51.100.0/24"])]
    in_order = fold([created, *later])
    p = fold(list(reversed(later)))
    assert created.data.credential_id not in p.credentials and d.username.lower() not in p.auth
    p.apply(created)
    assert p.credentials == in_order.credentials and p.auth == in_order.auth and not p.parked
    assert cached(p, d).status == "suspended" and cached(p, d).allowed_cidrs == ("198.51.100.0/24",)


def test_a_deactivation_before_its_creation_writes_the_same_tombstone_as_after_it() -> None:
    d = Domain()
    created = d.created(1)
    deactivation = d.deactivated(created, 5)
    assert fold([deactivation, created]).auth == fold([created, deactivation]).auth


def test_only_deactivations_publish_revocations() -> None:
    d = Domain()
    created = d.created(1)
    events = [created, rotated(d, created, 2, created.data.secret_id, grace=0),
              secret_revoked(d, created, 3, created.data.secret_id), suspended(d, created, 4),
              d.deactivated(created, 5)]  # fmt: skip
    assert revocations(events) == [(d.username.lower(), created.data.credential_id)]


def test_a_redelivered_lifecycle_event_writes_the_committed_entry() -> None:
    d = Domain()
    created = d.created(1)
    rotation = rotated(d, created, 2, created.data.secret_id)
    committed = fold([created, rotation])
    projection = ReadSideFold(credentials=dict(committed.credentials), auth=dict(committed.auth))
    writes = cache_writes(projection, [rotation])
    assert writes == {d.username.lower(): committed.auth[d.username.lower()]}


def test_entry_values_are_what_the_shared_format_writes_for_every_state() -> None:
    d = Domain()
    created = d.created(1)
    steps = [created, rotated(d, created, 2, created.data.secret_id, grace=90), suspended(d, created, 3),
             restricted(d, created, 4, ["192.0.2.0/24"], 60, None, 7), d.deactivated(created, 5)]  # fmt: skip
    for count in range(1, len(steps) + 1):
        (entry,) = fold(steps[:count]).auth.values()
        assert dict(zip(ENTRY_FIELDS, entry_values(entry), strict=True)) == to_cache_entry(entry).to_redis()
        assert json.loads(entry.secrets)[0]["hash"] == entry.secret_hash


def test_every_secret_revoked_fails_closed() -> None:
    d = Domain()
    created = d.created(1)
    p = fold([created, secret_revoked(d, created, 2, created.data.secret_id)])
    entry = cached(p, d)
    assert entry.secrets[0].hash == "0" * 64 and entry.secrets[0].id == initial_secret_id(created.data.credential_id)
    assert uuid.UUID(str(entry.credential_id)) == created.data.credential_id


def test_rotation_secret_revocation_suspension_resume_and_restrictions_each_announce_their_credential_once() -> None:
    d, other = Domain(), Domain()
    a, b = d.created(1), other.created(2)
    first = a.data.secret_id
    rotation = rotated(d, a, 3, first, grace=0)
    batch = [
        rotation,
        secret_revoked(d, a, 4, first),
        suspended(other, b, 5),
        resumed(other, b, 6),
        restricted(d, a, 7, cidrs=["203.0.113.0/24"]),
    ]
    mine, theirs = (d.username.lower(), a.data.credential_id), (other.username.lower(), b.data.credential_id)
    assert changes(batch) == [mine, theirs]  # each credential once, in position order
    for event, named in zip(batch, [mine, mine, theirs, theirs, mine], strict=True):
        assert changes([event]) == [named]
    assert revocations(batch) == []  # a change is never a revocation


def test_creation_deactivation_and_domain_events_announce_no_change() -> None:
    d = Domain()
    a = d.created(1)
    assert changes([d.registered(2), a, d.verified(3), d.deactivated(a, 4)]) == []

"""The batch logic on in-memory ports: isolation of a rejected event, dead-lettering, offset advance,
retries of an unavailable store, fail-closed deactivations and refused cache writes (no I/O)."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import pytest
from taifa_events import Envelope
from taifa_events.signing import REASON_BAD_SIGNATURE, USAGE_CONTEXT, Keyring, signature_of
from taifa_projector.application.batches import REASON_REJECTED, REASON_UNDECODABLE, BatchApplier, CacheRefused
from taifa_projector.application.rebuild import rebuild_from_event_store

from tests.unit.projector.fakes import (
    KEYRING,
    TOPIC,
    InMemoryAuthCache,
    InMemoryDeadLetters,
    InMemoryEventStore,
    InMemoryReadModelStore,
    raw_record,
    record_of,
)
from tests.unit.projector.projector_events import Domain, rotated, scenario, suspended


class Ports:
    def __init__(self, max_attempts: int = 3) -> None:
        self.store = InMemoryReadModelStore()
        self.cache = InMemoryAuthCache()
        self.dead_letters = InMemoryDeadLetters()
        self.applier = BatchApplier(
            self.store,
            self.cache,
            self.dead_letters,
            keyring=Keyring({"unit": b"u" * 32}),
            max_attempts=max_attempts,
            retry_initial=0.001,
            retry_max=0.001,
        )


def records(events: list[Envelope[Any]], first_offset: int = 0) -> list:
    return [record_of(e, first_offset + i) for i, e in enumerate(events)]


async def test_a_batch_is_applied_to_the_read_model_then_the_cache_with_its_offsets() -> None:
    ports = Ports()
    d = Domain()
    a = d.created(2)
    report = await ports.applier.process(records([d.registered(1), a], first_offset=10))
    assert report.applied == 2
    assert report.next_offsets == {(TOPIC, 0): 12} and ports.store.recorded == {(TOPIC, 0): 12}
    assert ports.cache.seen_offsets == {(TOPIC, 0): 12}
    assert ports.cache.entries[d.username.lower()].credential_id == a.data.credential_id
    assert ports.cache.applied and ports.dead_letters.sent == []


async def test_an_event_the_read_model_rejects_is_dead_lettered_alone_and_the_rest_of_the_batch_applies() -> None:
    ports = Ports(max_attempts=2)
    good, bad, after = Domain(), Domain(), Domain()
    events = [good.created(1), bad.created(2), after.created(3)]
    ports.store.rejected_events.add(events[1].event_id)
    report = await ports.applier.process(records(events))
    (letter,) = ports.dead_letters.sent
    assert letter.record.offset == 1 and letter.reason == REASON_REJECTED and letter.attempts == 2
    assert letter.error == "CheckViolationError(23514)"  # the driver's error, never its message
    assert report.dead_lettered == 1 and report.applied == 2
    assert set(ports.cache.entries) == {good.username.lower(), after.username.lower()}
    assert {r.credential_id for r in ports.store.state.credentials.values()} == {
        events[0].data.credential_id,
        events[2].data.credential_id,
    }
    # The partition moves on past the dead-lettered record.
    assert ports.store.recorded == {(TOPIC, 0): 3} and report.next_offsets == {(TOPIC, 0): 3}


async def test_offsets_advance_past_dead_lettered_records_at_the_tail_of_the_batch() -> None:
    ports = Ports()
    good, bad = Domain(), Domain()
    events = [good.created(1), bad.created(2)]
    ports.store.rejected_events.add(events[1].event_id)
    # A rejected event, then a record that never decodes: the batch's last two records are both dead-lettered.
    await ports.applier.process([*records(events, first_offset=40), raw_record(b"{not json", 42)])
    assert sorted(letter.record.offset for letter in ports.dead_letters.sent) == [41, 42]
    assert ports.store.recorded == {(TOPIC, 0): 43} and ports.cache.seen_offsets == {(TOPIC, 0): 43}


async def test_an_unavailable_store_is_waited_for_and_nothing_is_dead_lettered() -> None:
    ports = Ports(max_attempts=1)
    d = Domain()
    ports.store.failures.unavailable = 5
    ports.cache.failures.unavailable = 3
    report = await ports.applier.process(records([d.created(1)]))
    assert ports.store.failures.calls_while_unavailable == 5 and ports.cache.failures.calls_while_unavailable == 3
    assert report.applied == 1 and report.dead_lettered == 0 and ports.dead_letters.sent == []
    assert ports.store.recorded == {(TOPIC, 0): 1}


async def test_unsigned_and_undecodable_records_are_dead_lettered_at_once_and_never_applied() -> None:
    ports = Ports()
    d = Domain()
    created = d.created(1)
    unsigned = record_of(created, 0)._replace(signature=None)
    other_key = record_of(d.created(2), 1, keyring=Keyring({"other": b"o" * 32}, "other"))
    garbage = raw_record(b"{not json", 2)
    report = await ports.applier.process([unsigned, other_key, garbage])
    assert [(letter.record.offset, letter.reason, letter.attempts) for letter in ports.dead_letters.sent] == [
        (0, "unsigned", 1),
        (1, "unknown_signing_key", 1),
        (2, REASON_UNDECODABLE, 1),
    ]
    assert report.applied == 0 and ports.store.state.credentials == {} and ports.cache.entries == {}
    assert ports.store.recorded == {(TOPIC, 0): 3}


async def test_a_deactivation_the_read_model_rejects_is_quarantined_tombstoned_and_announced() -> None:
    ports = Ports()
    d = Domain()
    a = d.created(1)
    await ports.applier.process(records([a]))
    gone = d.deactivated(a, 2)
    ports.store.rejected_events.add(gone.event_id)
    await ports.applier.process(records([gone], first_offset=1))
    assert [letter.reason for letter in ports.dead_letters.sent] == [REASON_REJECTED]
    assert ports.store.quarantined == {a.data.credential_id: 2}
    entry = ports.cache.entries[d.username.lower()]
    assert not entry.active and entry.position == 2
    assert ports.cache.revocations == [(d.username.lower(), a.data.credential_id)]
    # A cache rebuilt from the read model (which still says active) keeps it revoked.
    snapshot = await ports.store.auth_snapshot()
    (rebuilt,) = snapshot.entries
    assert not rebuilt.active and rebuilt.credential_id == a.data.credential_id


async def test_an_authentic_undecodable_deactivation_revokes_the_active_credentials_of_the_domain_its_key_names() -> (
    None
):
    ports = Ports()
    d, other = Domain(), Domain()
    a, b = d.created(1), other.created(2)
    await ports.applier.process(records([a, b]))
    value = json.dumps({"event_type": "CredentialDeactivated", "position": 5, "data": {"broken": True}}).encode()
    poison = raw_record(value, 2, key=str(d.domain_id).encode(), declared=("CredentialDeactivated", 1))
    await ports.applier.process([poison])
    assert [letter.reason for letter in ports.dead_letters.sent] == [REASON_UNDECODABLE]
    assert ports.store.quarantined == {a.data.credential_id: 5}
    assert not ports.cache.entries[d.username.lower()].active
    assert ports.cache.entries[other.username.lower()].active  # another domain's credential is untouched
    assert ports.cache.revocations == [(d.username.lower(), a.data.credential_id)]


@pytest.mark.parametrize("value", [b"\x00a newer binary encoding", b'{"event_type": "CredentialDeactivated"}'])
async def test_an_undecodable_deactivation_naming_no_position_stays_above_its_batchs_events_for_the_credential(
    value: bytes,
) -> None:
    # Its creation and two changes come in the same poll, applied after the tombstone is written: a tombstone just
    # above the creation lost to the changes' newer positions, and the credential authenticated again.
    ports = Ports()
    d = Domain()
    a = d.created(1)
    changes = [rotated(d, a, 2, a.data.secret_id), rotated(d, a, 3, a.data.secret_id)]
    poison = raw_record(value, 3, key=str(d.domain_id).encode(), declared=("CredentialDeactivated", 2))
    await ports.applier.process([*records([a, *changes]), poison])
    assert [letter.reason for letter in ports.dead_letters.sent] == [REASON_UNDECODABLE]
    entry = ports.cache.entries[d.username.lower()]
    assert not entry.active and entry.position == 4
    assert ports.store.quarantined == {a.data.credential_id: 4}


@pytest.mark.parametrize(
    "envelope",
    [
        {"position": 5, "data": {"broken": True}},  # no envelope (a usage record's shape)
        {"event_type": "CredentialCreated", "position": 5, "data": {"broken": True}},
        {"event_type": "CredentialDeactivated", "position": 5, "data": {"domain_id": "OTHER"}},
    ],
    ids=["no-event-type", "another-event-type", "another-domain"],
)
async def test_an_undecodable_record_whose_value_contradicts_its_unsigned_key_or_header_revokes_nothing(
    envelope: dict[str, object],
) -> None:
    # The key and the event_type header are not signed: only a value that is this domain's deactivation counts.
    ports = Ports()
    d = Domain()
    a = d.created(1)
    await ports.applier.process(records([a]))
    if isinstance(envelope.get("data"), dict) and envelope["data"].get("domain_id") == "OTHER":  # type: ignore[union-attr]
        envelope = {**envelope, "data": {"domain_id": str(uuid4())}}
    value = json.dumps(envelope).encode()
    poison = raw_record(value, 2, key=str(d.domain_id).encode(), declared=("CredentialDeactivated", 1))
    await ports.applier.process([poison])
    assert [letter.reason for letter in ports.dead_letters.sent] == [REASON_UNDECODABLE]
    assert ports.store.quarantined == {} and ports.cache.revocations == []
    assert ports.cache.entries[d.username.lower()].active


async def test_a_signed_usage_record_moved_to_an_event_topic_does_not_verify() -> None:
    # Usage records are signed under their own context: a copy on an event topic, headers and all, is refused.
    ports = Ports()
    d = Domain()
    await ports.applier.process(records([d.created(1)]))
    value = json.dumps({"event_type": "CredentialDeactivated", "data": {"domain_id": str(d.domain_id)}}).encode()
    moved = raw_record(value, 1, key=str(d.domain_id).encode(), declared=("CredentialDeactivated", 1))
    moved = moved._replace(signature=signature_of(KEYRING.headers(value, USAGE_CONTEXT)))
    await ports.applier.process([moved])
    assert [letter.reason for letter in ports.dead_letters.sent] == [REASON_BAD_SIGNATURE]
    assert ports.cache.entries[d.username.lower()].active and ports.cache.revocations == []


async def test_a_cache_write_redis_refuses_deletes_its_entries_and_the_epoch_and_still_announces_revocations() -> None:
    ports = Ports()
    d = Domain()
    a = d.created(1)
    await ports.applier.process(records([a]))
    ports.cache.current_epoch = "complete"
    ports.cache.refuse_writes = 1
    report = await ports.applier.process(records([d.deactivated(a, 2)], first_offset=1))
    # The read model committed; the cache fails closed: no entry (relays refuse), no epoch (the guard rebuilds).
    assert report.applied == 1 and not ports.store.state.credentials[a.data.credential_id].is_active
    assert d.username.lower() not in ports.cache.entries and ports.cache.current_epoch is None
    assert ports.cache.revocations == [(d.username.lower(), a.data.credential_id)]
    assert ports.dead_letters.sent == []


async def test_when_redis_refuses_the_fail_closed_fallback_too_the_projector_stops() -> None:
    ports = Ports()
    d = Domain()
    ports.cache.refuse_writes = 1
    ports.cache.refuse_fail_closed = True
    with pytest.raises(CacheRefused):
        await ports.applier.process(records([d.created(1)]))


async def test_a_watermark_gone_back_below_one_seen_drops_the_epoch_instead_of_raising_it() -> None:
    ports = Ports()
    first, second = Domain(), Domain()
    await ports.applier.process(records([first.created(7)]))
    assert ports.cache.current_watermark == 7
    ports.cache.current_epoch = "complete"
    ports.cache.current_watermark = 3  # Redis restored from an older snapshot
    await ports.applier.process(records([second.created(8)], first_offset=1))
    assert ports.cache.current_epoch is None and ports.cache.current_watermark == 3


async def test_a_redelivered_batch_is_counted_as_duplicates_and_rewrites_the_cache() -> None:
    ports = Ports()
    d = Domain()
    batch = records([d.created(1)])
    await ports.applier.process(batch)
    ports.cache.flush()  # a crash between the PostgreSQL commit and the Redis write, in effect
    report = await ports.applier.process(batch)
    assert report.applied == 0 and report.duplicates == 1
    assert d.username.lower() in ports.cache.entries


async def test_a_rebuild_from_the_event_store_equals_what_the_live_batches_wrote() -> None:
    live = Ports()
    events = scenario(300, seed=3)
    for start in range(0, len(events), 50):
        await live.applier.process(records(events[start : start + 50], first_offset=start))
    rebuilt_store, rebuilt_cache = InMemoryReadModelStore(), InMemoryAuthCache()
    summary = await rebuild_from_event_store(InMemoryEventStore(events), rebuilt_store, rebuilt_cache, chunk=7)
    assert summary.events == len(events)
    for table in ("rm_smtp_credentials", "rm_domains"):
        assert await rebuilt_store.sorted_rows(table, "") == await live.store.sorted_rows(table, "")
    assert rebuilt_cache.entries == live.cache.entries and rebuilt_cache.owners == live.cache.owners
    assert rebuilt_cache.current_watermark == live.cache.current_watermark == len(events)


async def test_a_batch_announces_its_credential_changes_with_its_writes_and_a_redelivery_announces_nothing() -> None:
    ports = Ports()
    d = Domain()
    a = d.created(1)
    await ports.applier.process(records([a]))
    assert ports.cache.changes == []  # a creation has no live session to tell
    batch = records([rotated(d, a, 2, a.data.secret_id, grace=0), suspended(d, a, 3)], first_offset=1)
    await ports.applier.process(batch)
    assert ports.cache.changes == [(d.username.lower(), a.data.credential_id)]
    assert ports.cache.entries[d.username.lower()].status == "suspended"
    report = await ports.applier.process(batch)  # redelivered: duplicates
    assert report.duplicates == 2 and ports.cache.changes == [(d.username.lower(), a.data.credential_id)]


async def test_a_refused_cache_write_still_announces_the_batchs_changes() -> None:
    ports = Ports()
    d = Domain()
    a = d.created(1)
    await ports.applier.process(records([a]))
    ports.cache.refuse_writes = 1
    await ports.applier.process(records([suspended(d, a, 2)], first_offset=1))
    assert d.username.lower() not in ports.cache.entries and ports.cache.current_epoch is None
    assert ports.cache.changes == [(d.username.lower(), a.data.credential_id)]

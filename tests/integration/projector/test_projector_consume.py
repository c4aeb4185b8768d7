"""The projector against the real broker, PostgreSQL and Redis: effects, idempotence, read-your-writes."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from taifa_events import auth_cache

from tests.integration.projector.projector_harness import ReadSide, eventually, holds, produce, running
from tests.unit.projector.projector_events import Domain, rotated, suspended


async def test_events_become_rows_and_cache_entries_the_api_and_relay_read(isolated) -> None:
    settings = isolated.settings()
    d = Domain()
    a = d.created(3)
    events = [d.registered(1), d.verified(2), a]
    await produce(isolated.bootstrap, isolated.topic_names, events)
    async with ReadSide(settings) as side, running(settings):
        await eventually(lambda: side.count("rm_smtp_credentials"), what="credential row")
        await eventually(lambda: side.count("rm_domains", "status = 'verified'"), what="verified domain")
        await eventually(lambda: side.consumed(len(events)), what="written to the cache")
        row = await side.credential(a.data.credential_id)
        assert row["is_active"] and row["username"] == d.username and row["domain"] == d.name
        assert row["account_id"] == d.account_id and row["position"] == 3 and row["deactivated_at"] is None
        listed = await side.pool.fetch(
            "SELECT credential_id FROM rm_smtp_credentials WHERE account_id = $1 "
            "ORDER BY created_at DESC, credential_id DESC",
            d.account_id,
        )
        assert [r["credential_id"] for r in listed] == [a.data.credential_id]
        entry = await side.entry(d.username)
        assert entry is not None and entry.active and entry.secret_hash == a.data.secret_hash
        assert entry.credential_id == a.data.credential_id and entry.position == 3
        assert await side.redis.exists(auth_cache.applied_key(a.event_id))
        assert await side.redis.exists(auth_cache.EPOCH_KEY)


async def test_applied_signal_and_revocation_are_published_after_both_stores_have_the_effect(isolated) -> None:
    settings = isolated.settings()
    d = Domain()
    a = d.created(1)
    gone = d.deactivated(a, 2)
    subscriber = aioredis.Redis.from_url(isolated.redis_url)
    pubsub = subscriber.pubsub()
    await pubsub.subscribe(auth_cache.APPLIED_CHANNEL, auth_cache.REVOCATIONS_CHANNEL)
    try:
        async with ReadSide(settings) as side, running(settings):
            await produce(isolated.bootstrap, isolated.topic_names, [a, gone])
            seen: dict[str, list[str]] = {auth_cache.APPLIED_CHANNEL: [], auth_cache.REVOCATIONS_CHANNEL: []}
            async with asyncio.timeout(30):
                while str(gone.event_id) not in seen[auth_cache.APPLIED_CHANNEL]:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None:
                        continue
                    seen[message["channel"].decode()].append(message["data"].decode())
                    if message["data"].decode() == str(gone.event_id):
                        # At the moment of the signal both stores already hold the effect.
                        row = await side.credential(a.data.credential_id)
                        entry = await side.entry(d.username)
                        assert row is not None and not row["is_active"]
                        assert entry is not None and not entry.active and entry.position == 2
            revoked = [auth_cache.parse_revocation(m) for m in seen[auth_cache.REVOCATIONS_CHANNEL]]
            assert auth_cache.Revocation(d.username.lower(), str(a.data.credential_id)) in revoked
            assert str(a.event_id) in seen[auth_cache.APPLIED_CHANNEL]
    finally:
        await pubsub.aclose()
        await subscriber.aclose()


async def test_a_rotation_and_a_suspension_publish_a_change_notice_after_the_entry_holds_them(isolated) -> None:
    settings = isolated.settings()
    d = Domain()
    a = d.created(1)
    rotation, suspension = rotated(d, a, 2, a.data.secret_id, grace=0), suspended(d, a, 3)
    subscriber = aioredis.Redis.from_url(isolated.redis_url)
    pubsub = subscriber.pubsub()
    await pubsub.subscribe(auth_cache.APPLIED_CHANNEL, auth_cache.REVOCATIONS_CHANNEL)
    try:
        async with ReadSide(settings) as side, running(settings):
            await produce(isolated.bootstrap, isolated.topic_names, [a])
            await eventually(lambda: side.entry(d.username), what="the created entry")
            await produce(isolated.bootstrap, isolated.topic_names, [rotation, suspension])
            applied: list[str] = []
            notices: list[object] = []
            async with asyncio.timeout(30):
                while str(suspension.event_id) not in applied:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None:
                        continue
                    if message["channel"].decode() == auth_cache.APPLIED_CHANNEL:
                        applied.append(message["data"].decode())
                        continue
                    notices.append(auth_cache.parse_notice(message["data"]))
                    # Published in the transaction that wrote the entry: a relay re-reading now sees the change.
                    entry = await side.entry(d.username)
                    assert entry is not None and entry.position >= 2 and entry.secrets[0].id == rotation.data.secret_id
            changed = auth_cache.CredentialChange(d.username.lower(), str(a.data.credential_id))
            assert notices and all(type(n) is auth_cache.CredentialChange and n == changed for n in notices)
            assert len(notices) <= 2  # at most one per batch (the two events may come in one batch or two)
            assert (await side.entry(d.username)).status == "suspended"  # type: ignore[union-attr]
    finally:
        await pubsub.aclose()
        await subscriber.aclose()


async def test_the_same_batch_twice_changes_nothing_and_counts_duplicates(isolated) -> None:
    settings = isolated.settings()
    domains = [Domain() for _ in range(5)]
    events = []
    for i, d in enumerate(domains):
        created = d.created(10 * i + 2)
        events += [d.registered(10 * i + 1), created, d.deactivated(created, 10 * i + 3), d.created(10 * i + 4)]
    await produce(isolated.bootstrap, isolated.topic_names, events)
    async with ReadSide(settings) as side:
        async with running(settings) as projector:
            await eventually(lambda: side.consumed(len(events)), what="first delivery applied")
            await eventually(holds(lambda: projector.totals.applied == len(events)), what="totals counted")
            first = await side.checksums()
            assert projector.totals.duplicates == 0
            await produce(isolated.bootstrap, isolated.topic_names, events)
            await eventually(lambda: side.consumed(2 * len(events)), what="second delivery consumed")
            await eventually(holds(lambda: projector.totals.duplicates == len(events)), what="duplicates counted")
            assert projector.totals.applied == len(events)
        assert await side.checksums() == first
        assert await side.count("projector_processed_events") == len(events)
        assert await side.count("rm_smtp_credentials", "is_active") == len(domains)
        for d in domains:
            entry = await side.entry(d.username)
            assert entry is not None and entry.active


async def test_older_event_after_newer_and_both_orders_of_deactivate_a_create_b(isolated) -> None:
    settings = isolated.settings()
    first, second = Domain(), Domain()
    a1 = first.created(1)
    a1_gone = first.deactivated(a1, 2)
    b1 = first.created(3)
    a2 = second.created(4)
    a2_gone = second.deactivated(a2, 5)
    b2 = second.created(6)
    # first: in order; second: create-B before deactivate-A, then the old creation of A again.
    events = [a1, a1_gone, b1, a1, a2, b2, a2_gone, a2]
    await produce(isolated.bootstrap, isolated.topic_names, events)
    async with ReadSide(settings) as side, running(settings):
        await eventually(lambda: side.consumed(len(events)), what="all consumed")
        for d, a, b in ((first, a1, b1), (second, a2, b2)):
            entry = await side.entry(d.username)
            assert entry is not None and entry.active and entry.credential_id == b.data.credential_id
            row_a = await side.credential(a.data.credential_id)
            assert row_a is not None and not row_a["is_active"] and row_a["deactivated_at"] is not None
            assert (await side.credential(b.data.credential_id))["is_active"]


async def test_deactivation_arriving_before_its_creation_never_resurrects_the_credential(isolated) -> None:
    settings = isolated.settings()
    d = Domain()
    a = d.created(1)
    gone = d.deactivated(a, 2)
    async with ReadSide(settings) as side, running(settings):
        await produce(isolated.bootstrap, isolated.topic_names, [gone])
        await eventually(lambda: side.count("projector_parked_events"), what="deactivation parked")
        await eventually(lambda: side.consumed(1), what="parked deactivation written to the cache")
        entry = await side.entry(d.username)
        assert entry is not None and not entry.active
        await produce(isolated.bootstrap, isolated.topic_names, [a])
        await eventually(lambda: side.count("rm_smtp_credentials"), what="row created")
        await eventually(lambda: side.consumed(2), what="creation written to the cache")
        row = await side.credential(a.data.credential_id)
        assert not row["is_active"] and row["position"] == 2
        assert await side.count("projector_parked_events") == 0
        entry = await side.entry(d.username)
        assert entry is not None and not entry.active

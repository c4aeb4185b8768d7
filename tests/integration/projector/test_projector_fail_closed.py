"""Fail closed when an effect cannot be applied (issue item 5): a deactivation the read model refuses, one that
cannot be decoded, and a Redis that refuses the write after the PostgreSQL commit (real stores throughout)."""

from __future__ import annotations

import asyncio
import json
import uuid

from aiokafka import AIOKafkaProducer
from taifa_events import auth_cache, envelope_to_json, kafka_headers, topics

from tests.integration.projector.conftest import Isolated, own_redis
from tests.integration.projector.projector_harness import ReadSide, eventually, holds, metric, produce, running
from tests.integration.projector.test_projector_cache_state import revocations_heard
from tests.integration.projector.test_projector_failures import read_dlq
from tests.unit.projector.projector_events import Domain

# Test-only fault: PostgreSQL refuses every deactivation of a credential row (SQLSTATE P0001: deterministic).
REFUSE_DEACTIVATIONS = """
CREATE FUNCTION test_refuse_deactivation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT NEW.is_active THEN RAISE EXCEPTION 'deactivation refused by the test'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER test_refuse_deactivation BEFORE INSERT OR UPDATE ON rm_smtp_credentials
  FOR EACH ROW EXECUTE FUNCTION test_refuse_deactivation();
"""


async def _revoked(side: ReadSide, username: str, position: int) -> bool:
    entry = await side.entry(username)
    return entry is not None and not entry.active and entry.position == position


async def test_dead_lettered_deactivation_still_revokes_and_no_cache_rebuild_brings_it_back(isolated) -> None:
    settings = isolated.settings(projector_max_attempts=2)
    d = Domain()
    a = d.created(1)
    async with (
        revocations_heard(isolated.redis_url) as heard,
        ReadSide(settings) as side,
        running(settings) as projector,
    ):
        await produce(isolated.bootstrap, isolated.topic_names, [a])
        await eventually(lambda: side.committed(1), what="created")
        await side.pool.execute(REFUSE_DEACTIVATIONS)
        await produce(isolated.bootstrap, isolated.topic_names, [d.deactivated(a, 2)])
        await eventually(holds(lambda: projector.totals.dead_lettered == 1), what="deactivation dead-lettered")
        await eventually(lambda: _revoked(side, d.username, 2), what="tombstone written anyway")
        await eventually(lambda: asyncio.sleep(0, bool(heard)), what="revocation heard")
        assert heard == [auth_cache.Revocation(d.username.lower(), str(a.data.credential_id))]
        # The read model could not take it (operators see the DLQ); the quarantine holds the credential.
        assert (await side.credential(a.data.credential_id))["is_active"]
        assert await side.store.quarantined_credentials() == {a.data.credential_id: 2}
        # A flush: the cache is rebuilt from the read model, and the credential stays revoked.
        await side.redis.flushdb()
        await eventually(lambda: side.cache.epoch(), what="cache rebuilt")
        assert await _revoked(side, d.username, 2)
    dlq_topic = topics.dead_letter_topic(isolated.topic_names[topics.SMTP_CREDENTIALS])
    (dlq,) = await read_dlq(isolated.bootstrap, dlq_topic, 1)
    assert dict(dlq.headers)["taifa-dlq-reason"] == b"rejected"


async def _send_signed(isolated: Isolated, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
    """One record as the API would send it (signed when the session signs events), with chosen headers."""
    try:
        from tests.event_signing import signing_keyring

        headers = headers + signing_keyring().headers(value)
    except (ImportError, KeyError):  # a tree without event signing
        pass
    producer = AIOKafkaProducer(bootstrap_servers=isolated.bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        topic = isolated.topic_names[topics.SMTP_CREDENTIALS]
        await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def test_undecodable_deactivation_revokes_the_active_credential_of_its_domain(isolated) -> None:
    settings = isolated.settings()
    d, other = Domain(), Domain()
    a = d.created(1)
    kept = other.created(2)
    # A deactivation from a newer schema this projector cannot read: its headers and key say enough.
    future = envelope_to_json(d.deactivated(a, 5))
    future["schema_version"] = 99
    value = json.dumps(future).encode()
    async with ReadSide(settings) as side, running(settings) as projector:
        await produce(isolated.bootstrap, isolated.topic_names, [a, kept])
        await eventually(lambda: side.committed(2), what="created")
        headers = kafka_headers("CredentialDeactivated", uuid.uuid4(), 99)
        await _send_signed(isolated, str(d.domain_id).encode(), value, headers)
        await eventually(holds(lambda: projector.totals.dead_lettered == 1), what="dead-lettered as undecodable")
        await eventually(lambda: _revoked(side, d.username, 5), what="domain's credential revoked")
        assert await side.store.quarantined_credentials() == {a.data.credential_id: 5}
        assert (await side.entry(other.username)).active


async def test_undecodable_deactivation_in_the_batch_of_its_credentials_creation_revokes_it(isolated) -> None:
    # The domain's active entries were looked up before the batch's decodable events were applied: a creation in
    # the same poll (a projector catching up) was not there yet, and the credential stayed active.
    settings = isolated.settings()
    d, later = Domain(), Domain()
    a = d.created(1)
    future = envelope_to_json(d.deactivated(a, 5))
    future["schema_version"] = 99
    value = json.dumps(future).encode()
    async with ReadSide(settings) as side:
        # Both records are in the log before the projector starts: one poll, one batch.
        await produce(isolated.bootstrap, isolated.topic_names, [a])
        headers = kafka_headers("CredentialDeactivated", uuid.uuid4(), 99)
        await _send_signed(isolated, str(d.domain_id).encode(), value, headers)
        await produce(isolated.bootstrap, isolated.topic_names, [later.created(6)])  # after it: never revoked
        async with running(settings) as projector:
            await eventually(holds(lambda: projector.totals.dead_lettered == 1), what="dead-lettered as undecodable")
            await eventually(lambda: side.consumed(3), what="the three records applied")
            await projector.applier.cache_settled()
            assert await _revoked(side, d.username, 5)
            assert await side.store.quarantined_credentials() == {a.data.credential_id: 5}
            assert (await side.entry(later.username)).active


async def test_wrong_type_key_refused_after_the_commit_fails_closed_and_the_guard_repairs(isolated) -> None:
    settings = isolated.settings()
    d = Domain()
    a = d.created(3)
    refused = metric("taifa_projector_cache_write_refused_total", {"error": "ResponseError"})
    async with ReadSide(settings) as side, running(settings):
        await eventually(lambda: side.cache.epoch(), what="fresh cache marked complete")
        # Something else wrote a string where the projector keeps a hash: the batch's script fails.
        await side.redis.set(auth_cache.auth_key(d.username), "not a hash")
        await produce(isolated.bootstrap, isolated.topic_names, [a])
        await eventually(lambda: side.committed(1), what="applied to the read model")
        await eventually(
            holds(lambda: metric("taifa_projector_cache_write_refused_total", {"error": "ResponseError"}) > refused),
            what="refusal counted",
        )
        # The fallback removed the key; the guard rebuilds the cache from the read model.
        await eventually(lambda: _active(side, d.username), what="entry repaired")
        assert await side.cache.epoch() is not None and await side.cache.watermark() == 3


async def _active(side: ReadSide, username: str) -> bool:
    entry = await side.entry(username)
    return entry is not None and entry.active


async def test_redis_out_of_memory_after_the_commit_never_leaves_a_deactivated_credential_active(
    tmp_path, postgres_server, kafka_broker, migrated_template
) -> None:
    async with own_redis(tmp_path, postgres_server, kafka_broker, migrated_template) as (_, isolated):
        settings = isolated.settings()
        d = Domain()
        a = d.created(1)
        refused = metric("taifa_projector_cache_write_refused_total", {"error": "OutOfMemoryError"})
        rebuild_failures = metric("taifa_projector_cache_rebuild_failures_total")
        async with revocations_heard(isolated.redis_url) as heard, ReadSide(settings) as side, running(settings):
            await produce(isolated.bootstrap, isolated.topic_names, [a])
            await eventually(lambda: _active(side, d.username), what="created")
            await side.redis.config_set("maxmemory-policy", "noeviction")
            await side.redis.config_set("maxmemory", 1)  # every write refused (OOM); DEL and PUBLISH still work
            await produce(isolated.bootstrap, isolated.topic_names, [d.deactivated(a, 2)])
            await eventually(lambda: side.committed(2), what="deactivation committed to the read model")
            assert not (await side.credential(a.data.credential_id))["is_active"]
            # The entry is gone (fails closed), so is the epoch (relays: unavailable), and it was all said aloud.
            await eventually(lambda: _missing(side, d.username), what="entry deleted")
            assert await side.cache.epoch() is None
            assert metric("taifa_projector_cache_write_refused_total", {"error": "OutOfMemoryError"}) > refused
            await eventually(lambda: asyncio.sleep(0, bool(heard)), what="revocation heard")
            assert heard == [auth_cache.Revocation(d.username.lower(), str(a.data.credential_id))]
            await eventually(
                holds(lambda: metric("taifa_projector_cache_rebuild_failures_total") > rebuild_failures),
                what="failing rebuilds counted",
            )
            await side.redis.config_set("maxmemory", 0)
            await eventually(lambda: _revoked(side, d.username, 2), what="tombstone after the repair")
            await eventually(lambda: side.cache.epoch(), what="epoch back")
            assert await side.cache.watermark() == 2


async def _missing(side: ReadSide, username: str) -> bool:
    return await side.entry(username) is None and not await side.redis.exists(auth_cache.auth_key(username))

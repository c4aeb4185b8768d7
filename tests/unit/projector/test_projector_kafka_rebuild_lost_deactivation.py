"""`rebuild --from kafka` with a key missing from the ring that signed only a deactivation (a middle key: `taifa-1`
kept for Kafka rebuilds as deploy/README suggests, `taifa-2` retired after the next rotation, `taifa-3` active). The
live read side has the credential deactivated; a rebuild skipping what `taifa-2` signed would have it active again.
Refused: records signed with a key id the ring lacks (a review's probe, kept as this test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from taifa_events.signing import Keyring
from taifa_projector.application.batches import BatchApplier
from taifa_projector.application.ports import LogChunk, Record
from taifa_projector.application.rebuild import KafkaRebuildRefused, rebuild_from_kafka

from tests.unit.projector.fakes import TOPIC, InMemoryAuthCache, InMemoryDeadLetters, InMemoryReadModelStore, record_of
from tests.unit.projector.projector_events import Domain

K1, K2, K3 = b"1" * 32, b"2" * 32, b"3" * 32
SIGN_1 = Keyring({"taifa-1": K1}, "taifa-1")
SIGN_2 = Keyring({"taifa-2": K2}, "taifa-2")
SIGN_3 = Keyring({"taifa-3": K3}, "taifa-3")
LIVE_RING = Keyring({"taifa-1": K1, "taifa-2": K2, "taifa-3": K3}, "taifa-3")
REBUILD_RING = Keyring({"taifa-1": K1, "taifa-3": K3}, "taifa-3")  # taifa-2 retired


class _Log:
    def __init__(self, records: Sequence[Record]) -> None:
        self.records = list(records)

    async def log_starts(self, topic_names: Sequence[str]) -> dict[tuple[str, int], int]:
        return {}

    async def log_ends(self, topic_names: Sequence[str]) -> dict[tuple[str, int], int]:
        return {(TOPIC, 0): len(self.records)}

    async def read_to_end(self, topic_names: Sequence[str]) -> AsyncIterator[LogChunk]:
        end = {(TOPIC, 0): len(self.records)}
        yield self.records, dict(end), end


async def _probe() -> None:
    old, later = Domain(), Domain()
    created = old.created(3)
    signed = [
        (old.registered(1), SIGN_1),
        (old.verified(2), SIGN_1),
        (created, SIGN_1),
        (old.deactivated(created, 4), SIGN_2),  # the only record taifa-2 signed here
        (later.registered(5), SIGN_3),
    ]
    records = [record_of(event, offset, keyring=ring) for offset, (event, ring) in enumerate(signed)]

    store, cache = InMemoryReadModelStore(), InMemoryAuthCache()
    applier = BatchApplier(
        store, cache, InMemoryDeadLetters(), keyring=LIVE_RING, max_attempts=1, retry_initial=0, retry_max=0
    )
    await applier.process(records)
    assert cache.entries[old.username].active is False, "live: deactivated"

    try:
        await rebuild_from_kafka(store, cache, _Log(records), [TOPIC], keyring=REBUILD_RING, chunk=10)
    except KafkaRebuildRefused:
        return  # what a2f25c6 promises for a log that leaves the read side behind the live one
    entry = cache.entries.get(old.username)
    raise AssertionError(
        f"rebuild accepted; the deactivated credential's entry is now active={entry.active if entry else None}, "
        f"read model status={store.state.credentials[created.data.credential_id].status!r}"
    )


def test_a_kafka_rebuild_that_loses_a_deactivation_is_refused() -> None:
    asyncio.run(_probe())

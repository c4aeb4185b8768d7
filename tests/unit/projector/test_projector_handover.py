"""Partitions handed over in a rebalance (in memory): the instance giving them up lets its batch in flight and its
Redis writes land first, and never applies a batch it polled across the rebalance (another instance may own those
partitions now); a cache that missed a batch is found behind, after a lost commit answer or a replay too."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from taifa_projector.application.ports import StoreUnavailable
from taifa_projector.entrypoints.consume_loop import Projector

from tests.unit.projector.fakes import TOPIC, InMemoryAuthCache, InMemoryReadModelStore
from tests.unit.projector.projector_events import Domain
from tests.unit.projector.test_projector_deferred_cache import applier, records, until


class GatedStore(InMemoryReadModelStore):
    """The n-th batch's PostgreSQL transaction waits until `gates[n]` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gates = [asyncio.Event() for _ in range(4)]
        self.started = 0

    async def apply_batch(self, *args: Any, **kwargs: Any) -> Any:
        self.started += 1
        await self.gates[self.started - 1].wait()
        return await super().apply_batch(*args, **kwargs)


class Group:
    """The group consumer as the loop sees it: serves batches; a rewind serves the dropped one again."""

    def __init__(self, batches: list[list[Any]]) -> None:
        self.batches = batches
        self.served: list[list[Any]] = []
        self.rebalanced = 0
        self.rewinds = 0

    async def poll(self, *, timeout_ms: int, max_records: int) -> list[Any]:
        if self.batches:
            self.served.append(self.batches.pop(0))
            return self.served[-1]
        await asyncio.sleep(timeout_ms / 1000)
        return []

    def rebalances(self) -> int:
        return self.rebalanced

    async def rewind(self) -> None:
        self.rewinds += 1
        self.batches.insert(0, self.served[-1])  # the recorded offsets are before the dropped batch

    async def commit(self, offsets: Any) -> dict[Any, int]:
        return {}

    def assigned(self) -> list[Any]:
        return []


def projector(store: InMemoryReadModelStore, cache: InMemoryAuthCache, group: Group) -> Projector:
    made = Projector(
        SimpleNamespace(projector_poll_timeout_ms=10, projector_batch_size=100, projector_session_timeout_ms=10_000),
        health=False,
    )
    made.applier = applier(store, cache)
    made.group = group

    async def nothing() -> None:
        return None

    made._between_batches = nothing  # type: ignore[method-assign]  # the guard and the pruner are not under test
    return made


async def test_a_revocation_waits_for_the_batch_in_flight_and_the_batch_polled_before_it_is_read_again() -> None:
    store, cache = GatedStore(), InMemoryAuthCache()
    first, second = Domain(), Domain()
    group = Group([records([first.created(1)]), records([second.created(2)], first_offset=1)])
    loop = projector(store, cache, group)
    stop = asyncio.Event()
    consuming = asyncio.create_task(loop.consume(stop))
    # Batch 1 waits on PostgreSQL; batch 2 has been polled meanwhile.
    await until(lambda: store.started == 1 and len(group.served) == 2)
    group.rebalanced += 1  # the listener counts the rebalance, then waits (`before_revoke`)
    revoking = asyncio.create_task(loop._let_writes_land())
    await asyncio.sleep(0.05)
    assert not revoking.done(), "gave the partitions up with a batch still being applied"
    store.gates[0].set()
    await asyncio.wait_for(revoking, 5)
    assert store.recorded == {(TOPIC, 0): 1} and cache.seen_offsets == {(TOPIC, 0): 1}  # batch 1 landed in both
    # Batch 2, polled before the revocation, is not applied as it was: the partitions are read again.
    await until(lambda: group.rewinds == 1 and store.started == 2)
    assert len(group.served) == 3 and group.served[2] == group.served[1]  # the transaction under way: polled anew
    store.gates[1].set()
    await until(lambda: cache.seen_offsets == {(TOPIC, 0): 2})
    stop.set()
    await asyncio.wait_for(consuming, 5)
    assert store.batches == 2 and second.username.lower() in cache.entries


class AnswerLostStore(InMemoryReadModelStore):
    """The next commit reaches PostgreSQL but its answer does not (the connection dropped during COMMIT)."""

    def __init__(self) -> None:
        super().__init__()
        self.lose_next_answer = False

    async def apply_batch(self, *args: Any, **kwargs: Any) -> Any:
        outcome = await super().apply_batch(*args, **kwargs)
        if self.lose_next_answer:
            self.lose_next_answer = False
            raise StoreUnavailable("postgres", "ConnectionDoesNotExistError")
        return outcome


async def test_a_retried_commit_whose_answer_was_lost_is_not_trusted_until_rebuilt() -> None:
    """The retry finds the batch applied: it cannot write the domain's owner to the cache again, so the cache is
    found behind the read model (the guard rebuilds it, owner included) instead of being trusted without it."""
    store, cache = AnswerLostStore(), InMemoryAuthCache()
    batches = applier(store, cache, defer=False)
    cache.current_epoch = "complete"
    d = Domain()
    await batches.process(records([d.registered(1)]))
    store.lose_next_answer = True
    await batches.process(records([d.verified(2)], first_offset=1))  # committed, answer lost, retried
    assert d.name not in cache.owners  # what the retry could not write again
    assert cache.current_epoch is None and cache.seen_offsets == {(TOPIC, 0): 2}


async def test_a_replay_from_behind_the_recorded_offsets_still_finds_a_lost_write() -> None:
    """Records read from Kafka's committed offset (behind PostgreSQL's) after an owner committed a batch and died
    before its Redis write: the replay ends below what PostgreSQL held, and the cache must still be found behind."""
    store, cache = InMemoryReadModelStore(), InMemoryAuthCache()
    batches = applier(store, cache, defer=False)
    cache.current_epoch = "complete"
    d = [Domain() for _ in range(4)]
    await batches.process(records([d[0].created(1), d[1].created(2)]))
    lost = batches.decode(records([d[2].created(3), d[3].created(4)], first_offset=2))
    await store.apply_batch([e for _, e in lost.events], {(TOPIC, 0): 4})  # committed; its Redis write never ran
    await batches.process(records([d[2].created(3)], first_offset=2))  # replayed from 2, ends at 3 (below 4)
    assert cache.current_epoch is None  # the entry of d[3] is missing from the cache: not trusted

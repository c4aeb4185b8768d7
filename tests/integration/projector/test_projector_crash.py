"""Crash safety (E1, E7): SIGKILL the projector process at random points while events flow.

The final read models and cache must equal a from-scratch rebuild: 0 lost, 0 double-applied, no
deactivated credential active in the cache. Each instance is killed while it consumes (after it applied a batch,
at a random point of the next ones). The default run kills 5 times while 2,000 events flow;
`make chaos-projector` runs the same test bigger (TAIFA_PROJECTOR_CHAOS_KILLS / _EVENTS).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import urllib.request

import pytest
from taifa_localstack import ServiceProcess, free_port
from taifa_projector.domain.fold import ReadSideFold

from tests.integration.projector.conftest import PROJECTOR_BIN
from tests.integration.projector.projector_harness import ReadSide, eventually, produce, rebuild
from tests.unit.projector.projector_events import scenario

KILLS = int(os.environ.get("TAIFA_PROJECTOR_CHAOS_KILLS", "5"))
# A new instance applies its first batch 5 to 20 s after /readyz here (group join, then the first fetches from the
# local broker): the events flow this long per kill, so that each instance is killed while it consumes.
SECONDS_PER_KILL = 15.0
EVENTS = int(os.environ.get("TAIFA_PROJECTOR_CHAOS_EVENTS", "2000"))


def projector_process(isolated, workdir, name: str, port: int | None = None) -> ServiceProcess:
    port = port or free_port()
    env = isolated.env(
        TAIFA_PROJECTOR_HEALTH_PORT=str(port),
        # Short sessions so a killed member's partitions move on at once (docs/architecture.md, "Real parts").
        TAIFA_PROJECTOR_SESSION_TIMEOUT_MS="1000",
        TAIFA_PROJECTOR_BATCH_SIZE="25",
        TAIFA_PROJECTOR_POLL_TIMEOUT_MS="50",
        TAIFA_PROJECTOR_CACHE_CHECK_SECONDS="0.2",
    )
    return ServiceProcess(name, [PROJECTOR_BIN, "run"], workdir, env=env, ready_url=f"http://127.0.0.1:{port}/readyz")


def batches_applied(port: int) -> int:
    """How many batches the instance serving health on `port` has applied (its /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode()
    name = "taifa_projector_batch_apply_seconds_count"
    counts = [line.split()[-1] for line in text.splitlines() if line.startswith(name)]
    return int(float(counts[0])) if counts else 0


async def produce_paced(isolated, events, seconds: float) -> None:
    """Send `events` in small chunks spread over `seconds`, so they flow while the projector dies."""
    chunk = max(1, len(events) // 50)
    for start in range(0, len(events), chunk):
        await produce(isolated.bootstrap, isolated.topic_names, events[start : start + chunk])
        await asyncio.sleep(seconds / 50)


@pytest.mark.slow
async def test_sigkill_at_random_points_loses_nothing_and_applies_nothing_twice(isolated, tmp_path) -> None:
    began = time.monotonic()
    rng = random.Random(int(os.environ.get("TAIFA_PROJECTOR_CHAOS_SEED", "4")))
    events = scenario(EVENTS, seed=rng.randrange(1 << 30))
    # Some redeliveries from the producer side too (the broker has no idempotent producer).
    duplicates = [events[rng.randrange(len(events))] for _ in range(EVENTS // 50)]
    flow = asyncio.create_task(produce_paced(isolated, events + duplicates, seconds=KILLS * SECONDS_PER_KILL))
    kills = consuming = 0
    try:
        for kill in range(KILLS):
            port = free_port()
            process = projector_process(isolated, tmp_path, f"projector-{kill}", port)
            await asyncio.to_thread(process.start, 60)
            # Killed while it consumes (E1: mid-batch): once it has partitions and applied a batch, at a random
            # point of the next ones. Killed right after /readyz, before the group gave it partitions, no instance
            # ever applied anything and the test proved nothing (E2's commit-before-effects passed it).
            deadline = time.monotonic() + 2 * SECONDS_PER_KILL
            while (
                not flow.done() and time.monotonic() < deadline and await asyncio.to_thread(batches_applied, port) < 1
            ):
                await asyncio.sleep(0.05)
            consuming += await asyncio.to_thread(batches_applied, port) >= 1
            await asyncio.sleep(rng.uniform(0.0, 0.6))
            process.kill()  # SIGKILL to the process group, wherever it is
            kills += 1
        await flow
        final = projector_process(isolated, tmp_path, "projector-final")
        await asyncio.to_thread(final.start, 60)
        try:
            async with ReadSide(isolated.settings()) as side:
                await eventually(lambda: _complete(side, len(events)), timeout=120, what="final catch-up")
                live = await side.checksums()
                processed = await side.count("projector_processed_events")
                parked = await side.count("projector_parked_events")
        finally:
            await asyncio.to_thread(final.stop)
    finally:
        if not flow.done():
            flow.cancel()
    assert kills == KILLS
    assert consuming >= KILLS - 1, f"only {consuming} of {KILLS} instances were killed while consuming"
    # 0 lost, 0 double-applied: every event recorded exactly once, nothing left waiting.
    assert processed == len(events) and parked == 0

    # The oracle: the same events folded in memory, in position order.
    expected = ReadSideFold()
    expected.apply_all(events)
    async with ReadSide(isolated.settings()) as side:
        rows = {r["credential_id"]: r for r in await side.pool.fetch("SELECT * FROM rm_smtp_credentials")}
        assert set(rows) == set(expected.credentials)
        for credential_id, row in expected.credentials.items():
            assert (rows[credential_id]["is_active"], rows[credential_id]["position"]) == (row.is_active, row.position)
        # No deactivated credential is active in the cache.
        for entry in expected.auth.values():
            cached = await side.entry(entry.username)
            assert cached is not None and (cached.credential_id, cached.active, cached.position) == (
                entry.credential_id, entry.active, entry.position,
            )  # fmt: skip

        summary = await asyncio.to_thread(rebuild, isolated, "kafka")
        assert summary["events"] == len(events)
        assert await side.checksums() == live
    print(
        f"\ncrash test: {KILLS} SIGKILLs ({consuming} while consuming), {len(events)} events in "
        f"{time.monotonic() - began:.1f}s"
    )


async def _complete(side: ReadSide, total: int) -> bool:
    if await side.count("projector_processed_events") < total:
        return False
    # The cache is complete when its epoch exists and it has seen every offset PostgreSQL recorded.
    if not await side.redis.exists("taifa:auth:epoch"):
        return False
    recorded = await side.store.load_offsets()
    seen = await side.cache.offsets()
    return all(seen.get(tp, -1) >= offset for tp, offset in recorded.items())

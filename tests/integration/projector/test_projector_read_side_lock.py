"""A rebuild never runs under a live projector, and a projector started during a rebuild waits for it."""

from __future__ import annotations

import asyncio
import subprocess

from taifa_projector.adapters.read_side_lock import READ_SIDE_LOCK, ReadSideLock

from tests.integration.projector.conftest import PROJECTOR_BIN
from tests.integration.projector.projector_harness import ReadSide, eventually, holds, produce, rebuild, running
from tests.unit.projector.projector_events import Domain


def _rebuild_process(isolated) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [PROJECTOR_BIN, "rebuild", "--from", "kafka"],
        env={**os.environ, **isolated.env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_rebuild_refuses_while_a_projector_runs_and_changes_nothing(isolated) -> None:
    settings = isolated.settings()
    d = Domain()
    events = [d.registered(1), d.verified(2), d.created(3)]
    await produce(isolated.bootstrap, isolated.topic_names, events)
    async with ReadSide(settings) as side:
        async with running(settings) as projector:
            await eventually(holds(lambda: projector.totals.applied == 3), what="applied")
            before = await side.checksums()
            refused = await asyncio.to_thread(_rebuild_process, isolated)
            assert refused.returncode == 1
            assert "live projectors are running" in refused.stderr
            assert await side.checksums() == before
            assert await side.count("projector_processed_events") == 3
        # Once the projector is gone, the rebuild runs.
        summary = await asyncio.to_thread(rebuild, isolated, "kafka")
        assert summary["events"] == 3
        assert await side.checksums() == before


async def test_a_projector_started_during_a_rebuild_waits_for_it(isolated) -> None:
    settings = isolated.settings()
    d = Domain()
    await produce(isolated.bootstrap, isolated.topic_names, [d.registered(1)])
    rebuilding = ReadSideLock(settings.database_url, exclusive=True)
    assert await rebuilding.try_acquire()
    async with ReadSide(settings) as side:
        try:
            started = asyncio.create_task(_run_until_applied(settings, 1))
            # The projector asks for the lock and waits: PostgreSQL shows its request as not granted.
            await eventually(lambda: _waiting_for_lock(side), what="projector waiting on the rebuild's lock")
            assert not started.done()
            assert await side.count("rm_domains") == 0
        finally:
            await rebuilding.release()
        await asyncio.wait_for(started, 60)
        assert await side.count("rm_domains") == 1


async def _run_until_applied(settings, total: int) -> None:
    async with running(settings) as projector:
        await eventually(holds(lambda: projector.totals.applied == total), what="applied after the rebuild")


async def _waiting_for_lock(side: ReadSide) -> bool:
    waiting = await side.pool.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND ((classid::bigint << 32) | objid::bigint) = $1",
        READ_SIDE_LOCK,
    )
    return bool(waiting)


async def test_a_projector_takes_the_lock_again_when_its_connection_is_lost(isolated) -> None:
    settings = isolated.settings()
    async with ReadSide(settings) as side, running(settings):
        first = await eventually_holder(side)
        await side.pool.execute("SELECT pg_terminate_backend($1)", first)
        await eventually(lambda: _held_by_other_than(side, first), what="shared lock held again")
        refused = await asyncio.to_thread(_rebuild_process, isolated)
        assert refused.returncode == 1 and "live projectors are running" in refused.stderr


async def eventually_holder(side: ReadSide) -> int:
    await eventually(lambda: _held_by_other_than(side, 0), what="shared lock held")
    return int(await side.pool.fetchval(_HOLDER, READ_SIDE_LOCK))


_HOLDER = (
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND mode = 'ShareLock' "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND ((classid::bigint << 32) | objid::bigint) = $1"
)


async def _held_by_other_than(side: ReadSide, pid: int) -> bool:
    holder = await side.pool.fetchval(_HOLDER, READ_SIDE_LOCK)
    return holder is not None and holder != pid

"""Projector benchmark (`make bench-projector`): live throughput, batch-apply p99, rebuild time.

Starts its own PostgreSQL, Redis and Tansu broker (taifa_localstack), then
1. produces N live events to Kafka, then for 1, 2 and 3 projector processes in one consumer group (3 runs each)
   (partitions are the unit of scale; the read side is emptied between runs) applies them all:
   prints events/s (first batch start to last batch end), the batch-apply p50/p99, the projectors'
   CPU per event and the whole machine's (PostgreSQL, Redis and the broker share the 2 cores), with where the
   machine's went (`machine_cpu`: the projector, PostgreSQL, Redis, the broker, the kernel and the rest);
2. rebuilds from Kafka offset 0 (the same N events);
3. writes M events into `event_store` and times `rebuild --from event-store` into read model and cache.
Both rebuilds print the machine's CPU per event by process group too. `bench_decode.py` (beside this file) compares
the envelope's decode with msgspec's.
Every event carries the envelope metadata the API writes (actor, source address, request id), and every one also
becomes a row of the audit feed (issue 17); `--no-metadata` gives the events without it (the workload before).

    python bench/projector/bench_projector.py            # N = 200,000 live, M = 1,000,000 rebuild
    python bench/projector/bench_projector.py --quick    # N = 20,000, M = 50,000
    python bench/projector/bench_projector.py --rebuild-only --rebuild-events 200000 [--profile /tmp/spy]
                                                         # only step 3 (py-spy on the rebuild with --profile)
    python bench/projector/bench_projector.py --live-only --instances 1 --live-events 60000   # only step 1
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from machine_cpu import Snapshot, machine_busy_seconds
from taifa_events.signing import Keyring
from taifa_localstack import Stack
from taifa_projector import bootstrap
from taifa_projector.adapters import migrate
from taifa_projector.adapters.postgres import READ_SIDE_TABLES
from taifa_projector.application.rebuild import rebuild_from_event_store, rebuild_from_kafka
from taifa_projector.entrypoints.consume_loop import Projector
from taifa_projector.settings import Settings
from taifa_runtime import loop as runtime_loop
from workload import fill_event_store, produce

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "relay"))
from spy import Profiler  # bench/relay/spy.py (py-spy), one copy for both benches


def _instance(settings: Settings, stop: Any, results: Any) -> None:
    """One projector instance in its own process (as in production): consume until `stop`, then report
    its batches as (start, end, applied) marks on the system-wide monotonic clock, and its CPU seconds."""

    async def go() -> None:
        projector = Projector(settings, health=False)
        await projector.start()
        marks: list[tuple[float, float, int]] = []
        apply = projector.applier.apply

        async def timed(batch):  # type: ignore[no-untyped-def]
            began = time.perf_counter()
            report = await apply(batch)
            marks.append((began, time.perf_counter(), report.applied))
            return report

        projector.applier.apply = timed  # type: ignore[method-assign]
        done = asyncio.Event()
        cpu = time.process_time()
        task = asyncio.create_task(projector.consume(done))
        while not stop.is_set() and not task.done():  # noqa: ASYNC110 - a multiprocessing Event cannot be awaited
            await asyncio.sleep(0.05)
        done.set()
        await task
        cpu = time.process_time() - cpu
        await projector.close()
        results.put((marks, cpu))

    runtime_loop.run(go())  # as `taifa-projector run` does


async def _wait_consumed(
    database_url: str, group_id: str, total: int, stalled_after: float = 120.0
) -> list[tuple[float, float]]:
    """Poll until the group's recorded offsets cover all `total` events (the topics hold exactly those, from
    offset 0); fail if they stop moving. Returns (monotonic time, machine busy seconds) samples taken meanwhile.

    The poll reads the few `projector_offsets` rows, not a count over the processed-events table: that count
    grows with the run and cost PostgreSQL enough CPU to slow the projectors it was watching.
    """
    conn = await asyncpg.connect(database_url)
    samples: list[tuple[float, float]] = []
    try:
        consumed, moved = -1, time.monotonic()
        while consumed < total:
            samples.append((time.perf_counter(), machine_busy_seconds()))
            offsets = await conn.fetchval(
                "SELECT coalesce(sum(next_offset), 0) FROM projector_offsets WHERE group_id = $1", group_id
            )
            if offsets != consumed:
                consumed, moved = offsets, time.monotonic()
            elif time.monotonic() - moved > stalled_after:
                raise RuntimeError(f"projectors stalled at {consumed:,} of {total:,} events")
            await asyncio.sleep(0.1)
        samples.append((time.perf_counter(), machine_busy_seconds()))
    finally:
        await conn.close()
    return samples


def _busy_between(samples: list[tuple[float, float]], start: float, end: float) -> float:
    """Machine busy seconds from the last sample at or before `start` to the first at or after `end`."""
    before = max((s for s in samples if s[0] <= start), default=samples[0])
    after = min((s for s in samples if s[0] >= end), default=samples[-1])
    return after[1] - before[1]


async def reset_read_side(settings: Settings) -> None:
    """Empty read models, bookkeeping and cache, so that the next run applies every event afresh."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(f"TRUNCATE {', '.join(READ_SIDE_TABLES)}, projector_offsets")
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        await client.flushall()
    finally:
        await client.aclose()


async def redis_footprint(redis_url: str) -> tuple[int, float]:
    """Keys and used memory (MB) of the Redis the projectors wrote: auth entries and read-your-writes keys."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        return int(await client.dbsize()), int((await client.info("memory"))["used_memory"]) / 1e6
    finally:
        await client.aclose()


def live(settings: Settings, total: int, instances: int) -> dict[str, Any]:
    """`instances` projector processes in one consumer group over the same `total` events."""
    asyncio.run(reset_read_side(settings))
    settings = settings.model_copy(update={"projector_group_id": f"bench-{instances}-{uuid.uuid4().hex[:8]}"})
    context = multiprocessing.get_context("spawn")
    stop, results = context.Event(), context.Queue()
    processes = [context.Process(target=_instance, args=(settings, stop, results)) for _ in range(instances)]
    before = Snapshot.take()
    for process in processes:
        process.start()
    try:
        samples = asyncio.run(_wait_consumed(settings.database_url, settings.projector_group_id, total))
    finally:
        stop.set()
        reports = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join()
    spent = before.until(Snapshot.take(), total)
    redis_keys, redis_mb = asyncio.run(redis_footprint(settings.redis_url))
    marks = [mark for batch_marks, _ in reports for mark in batch_marks]
    first, last = min(began for began, _, _ in marks), max(end for _, end, _ in marks)
    seconds = last - first
    # From the first batch to the last (the processes' start-up is not the projection's cost), to 0.1 s.
    busy = _busy_between(samples, first, last)
    batches = sorted(end - began for began, end, _ in marks)
    # The first and the last fifth of the events: does the rate hold while the tables grow?
    done, times = 0, sorted(marks, key=lambda m: m[1])
    fifth: list[tuple[float, int]] = []
    for _, end, applied in times:
        done += applied
        fifth.append((end, done))

    def reached(share: float) -> float:
        return next(end for end, n in fifth if n >= share * total)

    first_fifth = 0.2 * total / (reached(0.2) - first)
    last_fifth = 0.2 * total / (last - reached(0.8))
    return {
        "redis_keys": redis_keys,
        "redis_mb": redis_mb,
        "first_fifth": first_fifth,
        "last_fifth": last_fifth,
        "events": total,
        "seconds": seconds,
        "events_per_s": total / seconds,
        "cpu_us_per_event": 1e6 * sum(cpu for _, cpu in reports) / total,
        "machine_us_per_event": 1e6 * busy / total,
        "spent": spent,
        "shares": ", ".join(f"{sum(a for _, _, a in m):,}" for m, _ in reports),
        "batches": len(batches),
        "batch_p50_ms": 1000 * statistics.median(batches),
        "batch_p99_ms": 1000 * batches[min(len(batches) - 1, int(0.99 * len(batches)))],
    }


async def with_stores(settings: Settings, action):  # type: ignore[no-untyped-def]
    async with bootstrap.tools(settings, redis_timeout=60) as parts:
        return await action(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--live-events", type=int, default=None)
    parser.add_argument("--rebuild-events", type=int, default=None)
    parser.add_argument(
        "--instances", type=int, nargs="+", default=[1, 2, 3],
        help="projector processes sharing the partitions, live runs per value (default: 1, 2, 3)",
    )  # fmt: skip
    parser.add_argument(
        "--repeat", type=int, default=None,
        help="live runs per process count (default 3, 1 with --quick): this shared VM's speed varies from run to run",
    )  # fmt: skip
    parser.add_argument(
        "--no-metadata", action="store_true",
        help="events without the envelope metadata the API writes since issue 17 (the workload measured before it)",
    )  # fmt: skip
    parser.add_argument(
        "--rebuild-only", action="store_true",
        help="only the event-store rebuild (step 3): no live runs, no rebuild from Kafka",
    )  # fmt: skip
    parser.add_argument(
        "--live-only", action="store_true",
        help="only the live runs (step 1): no rebuild from Kafka, no event-store rebuild",
    )  # fmt: skip
    parser.add_argument(
        "--profile", type=Path, default=None, metavar="DIR",
        help="py-spy on the event-store rebuild (after the measured one, a second rebuild): DIR/rebuild.txt",
    )  # fmt: skip
    args = parser.parse_args()
    metadata = not args.no_metadata
    live_n = args.live_events or (20_000 if args.quick else 200_000)
    rebuild_n = args.rebuild_events or (50_000 if args.quick else 1_000_000)

    # Removed at the end: a 1,000,000-event run leaves gigabytes of PostgreSQL files otherwise.
    with (
        tempfile.TemporaryDirectory(prefix="taifa-bench-projector-", ignore_cleanup_errors=True) as tmp,
        Stack(Path(tmp)) as stack,
    ):
        env = stack.env()
        settings = Settings(
            database_url=env["TAIFA_DATABASE_URL"], redis_url=env["TAIFA_REDIS_URL"],
            kafka_bootstrap=env["TAIFA_KAFKA_BOOTSTRAP"], projector_group_id="bench",
            event_signing_keys=env["TAIFA_EVENT_SIGNING_KEYS"],  # the stack's key, made for this run
        )  # fmt: skip
        keyring = Keyring.parse(env["TAIFA_EVENT_SIGNING_KEYS"], env["TAIFA_EVENT_SIGNING_KEY_ID"])
        migrate.upgrade(settings.database_url)
        print(
            f"projector bench: {live_n:,} live events, {rebuild_n:,} for the event-store rebuild "
            f"({'with' if metadata else 'without'} envelope metadata)",
            flush=True,
        )

        if not args.rebuild_only:
            live_and_kafka_rebuild(settings, keyring, live_n, args, metadata)
        if not args.live_only:
            rebuild_from_store(settings, rebuild_n, metadata, args.profile)
    sys.exit(0)


def live_and_kafka_rebuild(settings: Settings, keyring: Keyring, live_n: int, args: Any, metadata: bool) -> None:
    """Steps 1 and 2: live runs per process count, then the rebuild from Kafka offset 0."""
    produced = asyncio.run(produce(settings.kafka_bootstrap, live_n, keyring, metadata=metadata))
    print(f"  produced {live_n:,} events to Kafka in {produced:.1f}s", flush=True)
    repeat = args.repeat or (1 if args.quick else 3)
    for instances in args.instances:
        rates = []
        for _ in range(repeat):
            figures = live(settings, live_n, instances)
            rates.append(figures["events_per_s"])
            print(
                f"  live, {instances} projector process{'es' if instances > 1 else ''} in one group "
                f"(applied {figures['shares']}): {figures['events_per_s']:,.0f} events/s "
                f"({live_n:,} in {figures['seconds']:.1f}s, {figures['batches']} batches), batch apply "
                f"p50 {figures['batch_p50_ms']:.1f} ms, p99 {figures['batch_p99_ms']:.1f} ms; projector CPU "
                f"{figures['cpu_us_per_event']:.1f} us/event, whole machine (PostgreSQL, Redis, broker "
                f"included) {figures['machine_us_per_event']:.1f} us/event; first fifth of the events "
                f"{figures['first_fifth']:,.0f}/s, last fifth {figures['last_fifth']:,.0f}/s; Redis after it "
                f"{figures['redis_keys']:,} keys, {figures['redis_mb']:.0f} MB; from the processes' start to their "
                f"end {figures['spent']}",
                flush=True,
            )
        if repeat > 1:
            print(
                f"  => {instances} process{'es' if instances > 1 else ''}: median {statistics.median(rates):,.0f} "
                f"events/s over {repeat} runs (min {min(rates):,.0f}, max {max(rates):,.0f})",
                flush=True,
            )
    if args.live_only:
        return
    cpu, before = time.process_time(), Snapshot.take()
    summary = runtime_loop.run(
        with_stores(
            settings,
            lambda parts: rebuild_from_kafka(
                parts.store,
                parts.cache,
                parts.event_log,
                settings.projector_topics,
                keyring=settings.event_keyring(),
            ),
        )
    )
    cpu, spent = time.process_time() - cpu, before.until(Snapshot.take(), summary.events)
    rate = summary.events / summary.seconds
    print(
        f"  rebuild from Kafka: {summary.events:,} events in {summary.seconds:.1f}s "
        f"({rate:,.0f} events/s; phases {_phases(summary.phases)}; CPU {1e6 * cpu / summary.events:.1f} us/event; "
        f"{spent})",
        flush=True,
    )


def rebuild_from_store(settings: Settings, rebuild_n: int, metadata: bool, profile: Path | None) -> None:
    """Step 3: fill `event_store`, time `rebuild --from event-store`; with `profile`, once more under py-spy."""
    filled = asyncio.run(fill_event_store(settings.database_url, rebuild_n, metadata=metadata))
    print(f"  wrote {rebuild_n:,} events to event_store in {filled:.1f}s", flush=True)
    for spied in (False, True) if profile else (False,):
        spy = Profiler(os.getpid(), profile / "rebuild.txt") if profile and spied else None
        cpu, before = time.process_time(), Snapshot.take()
        summary = runtime_loop.run(
            with_stores(settings, lambda parts: rebuild_from_event_store(parts.event_store, parts.store, parts.cache))
        )
        cpu, spent = time.process_time() - cpu, before.until(Snapshot.take(), summary.events)
        if spy is not None:
            spy.stop()
        print(
            f"  rebuild from event store{' (under py-spy)' if spied else ''}: {summary.events:,} events -> "
            f"{summary.credentials:,} credentials, {summary.domains:,} domains, {summary.auth_entries:,} cache "
            f"entries in {summary.seconds:.1f}s ({summary.events / summary.seconds:,.0f} events/s; phases "
            f"{_phases(summary.phases)}; CPU {1e6 * cpu / summary.events:.1f} us/event; {spent})",
            flush=True,
        )


def _phases(phases: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.1f}s" for name, seconds in phases.items())


if __name__ == "__main__":
    main()

"""`taifa-projector`: run the consumer, apply migrations, rebuild the read side, print checksums."""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from taifa_events.signing import InvalidKeyring, Keyring
from taifa_runtime import loop as runtime_loop
from taifa_runtime.lifecycle import stop_on_signals

from taifa_projector import bootstrap
from taifa_projector.adapters.table_swap import SwapTimedOut
from taifa_projector.application.checksum import read_side_checksums
from taifa_projector.application.ports import EventLog
from taifa_projector.application.rebuild import (
    CacheLostDuringRebuild,
    KafkaRebuildRefused,
    RebuildSummary,
    rebuild_from_event_store,
    rebuild_from_kafka,
)
from taifa_projector.domain.log_positions import LogNotFromZero, TopicPartitionKey
from taifa_projector.entrypoints import consume_loop
from taifa_projector.settings import Settings

app = typer.Typer(add_completion=False, help="Taifa Mail projector: read models and the auth cache from Kafka.")
console = Console(stderr=True)


class Source(StrEnum):
    kafka = "kafka"
    event_store = "event-store"


def _require_keyring(settings: Settings, *, signs: bool = False) -> Keyring:
    """The event verification keys, or a clear refusal (exit status 2) when none are configured; with `signs` (a
    projector that flushes usage), also the active key it signs with, before it joins the consumer group (a
    projector left on a retired key id would otherwise take partitions, then die: a rebalance per restart)."""
    try:
        if signs:
            settings.usage_signing_keyring()
        return settings.event_keyring()
    except InvalidKeyring as exc:
        console.print(f"taifa-projector: refusing to start: {exc}", markup=False)
        raise typer.Exit(2) from None


@app.command()
def run() -> None:
    """Consume the event topics until SIGTERM/SIGINT (health and metrics on TAIFA_PROJECTOR_HEALTH_PORT)."""
    settings = Settings()
    bootstrap.configure_logging(settings)
    _require_keyring(settings, signs=settings.projector_usage_enabled)

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        await consume_loop.run(settings, stop)

    runtime_loop.run(main())


@app.command()
def migrate() -> None:
    """Apply the projector's migrations (version table alembic_version_projector)."""
    bootstrap.migrate_schema(Settings())
    typer.echo("projector schema up to date")


async def _log_ends_before_event_store_rebuild(
    settings: Settings, log: EventLog
) -> dict[TopicPartitionKey, int] | None:
    """Where each partition's log ends, read before the event store (the group's offsets are raised to them: every
    record below them is in the store, or one a database restore took out of it, which must not be replayed).

    Without Kafka the rebuild still runs and keeps the offsets as they are, with a warning: a projector that finds a
    retention gap then stops again and says so, but after a database restore it would replay what the restore
    removed, so the warning says to run the rebuild again once Kafka answers.
    """
    try:
        return await asyncio.wait_for(log.log_ends(settings.projector_topics), 60)
    except Exception as exc:  # noqa: BLE001 - any Kafka failure: warn, rebuild anyway
        console.print(
            f"warning: could not read where the Kafka logs end ({type(exc).__name__}); the recorded offsets are "
            "kept as they are, so a projector that finds a retention gap will stop again, and after a database "
            "restore the projectors would replay the events the restore removed: run this rebuild again once "
            "Kafka answers, before starting them",
            markup=False,
            style="yellow",
        )
        return None


@app.command()
def rebuild(
    source: Annotated[Source, typer.Option("--from", help="Replay from Kafka offset 0 or from the event store.")],
    allow_loss: Annotated[
        bool,
        typer.Option(
            "--allow-loss",
            help="With --from kafka: swap in what the log gives even when records do not verify or the log ends "
            "below the live auth cache (refused otherwise, nothing changed).",
        ),
    ] = False,
) -> None:
    """Drop and rebuild the read models and the auth cache (stop the projectors first)."""
    settings = Settings()
    # From Kafka every record's signature is checked; the event store is the log of record and needs none.
    keyring = _require_keyring(settings) if source is Source.kafka else None

    async def main() -> RebuildSummary:
        lock = bootstrap.exclusive_read_side(settings)
        if not await lock.try_acquire():
            console.print("[red]live projectors are running: stop them first (the rebuild replaces what they write)")
            raise typer.Exit(1)
        try:
            async with bootstrap.tools(settings) as parts:
                return await _rebuild(settings, source, keyring, parts, allow_loss=allow_loss)
        except (LogNotFromZero, KafkaRebuildRefused, SwapTimedOut, CacheLostDuringRebuild) as exc:  # say why
            console.print(f"taifa-projector rebuild: {exc}", markup=False, style="red")
            raise typer.Exit(1) from None
        finally:
            await lock.release()

    summary = runtime_loop.run(main())
    _print_summary(summary)


async def _rebuild(
    settings: Settings, source: Source, keyring: Keyring | None, parts: bootstrap.Tools, *, allow_loss: bool
) -> RebuildSummary:
    with Progress(
        TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=max(total, 1))
            bar.update(tasks[phase], completed=done, total=max(total, 1))

        if source is Source.event_store:
            ends = await _log_ends_before_event_store_rebuild(settings, parts.event_log)
            return await rebuild_from_event_store(
                parts.event_store, parts.store, parts.cache, chunk=settings.projector_cache_chunk,
                progress=progress, log_ends_before=ends,
            )  # fmt: skip
        return await rebuild_from_kafka(
            parts.store, parts.cache, parts.event_log, settings.projector_topics,
            keyring=keyring or settings.event_keyring(), chunk=settings.projector_cache_chunk, progress=progress,
            allow_loss=allow_loss,
        )  # fmt: skip


def _print_summary(summary: RebuildSummary) -> None:
    table = Table(title=f"rebuild from {summary.source}", show_header=False)
    for name, value in (
        ("events applied", summary.events),
        ("invalid (skipped)", summary.invalid),
        ("signature refused (skipped)", summary.unverified),
        ("credentials", summary.credentials),
        ("domains", summary.domains),
        ("auth cache entries", summary.auth_entries),
        ("parked events", summary.parked),
        ("seconds", f"{summary.seconds:.2f}"),
        *((f"  {phase} s", f"{seconds:.2f}") for phase, seconds in summary.phases.items()),
    ):
        table.add_row(name, str(value))
    console.print(table)
    typer.echo(
        json.dumps(
            {
                "source": summary.source,
                "events": summary.events,
                "unverified": summary.unverified,
                "seconds": round(summary.seconds, 3),
            }
        )
    )


@app.command()
def checksum() -> None:
    """Print SHA-256 checksums of the sorted read models and auth-cache entries (JSON)."""
    settings = Settings()

    async def main() -> dict[str, str]:
        async with bootstrap.tools(settings) as parts:
            return await read_side_checksums(parts.store, parts.cache)

    typer.echo(json.dumps(runtime_loop.run(main()), indent=2))

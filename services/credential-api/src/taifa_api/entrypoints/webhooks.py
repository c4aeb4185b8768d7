"""`taifa-webhooks run`: the webhook dispatcher process (issue 17), a separate Deployment of the credential-api image.

Two loops side by side until SIGTERM: the consumer (Kafka records -> signed-event checks -> deliveries + offsets in
one PostgreSQL transaction) and the delivery loop (due deliveries -> signed HTTP attempts). /healthz, /readyz
(PostgreSQL answers) and /metrics on TAIFA_WEBHOOKS_HEALTH_PORT; JSON logs like the other services.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import typer
from taifa_events.signing import InvalidKeyring
from taifa_runtime.health import HealthServer
from taifa_runtime.lifecycle import sleep_unless_stopped, stop_on_signals
from taifa_runtime.logs import configure_logging
from taifa_runtime.loop import run as run_loop

from taifa_api import bootstrap, metrics
from taifa_api.adapters.webhook_http import Resolve
from taifa_api.adapters.webhook_secrets import WebhookKeyError
from taifa_api.application.webhook_feed import feed_event, next_offsets
from taifa_api.settings import Settings

log = logging.getLogger("taifa_api.webhooks")

SERVICE = "taifa-webhooks"
POLL_TIMEOUT_MS = 1000
RETRY_SECONDS = 1.0


async def consume(parts: bootstrap.WebhookDispatcher, stop: asyncio.Event) -> None:
    """Records -> deliveries, each batch with its offsets in one transaction (retried until it commits)."""
    consumer = parts.consumer
    while not stop.is_set():
        try:
            records = await consumer.poll(POLL_TIMEOUT_MS)
        except Exception:  # the broker is away: the consumer reconnects by itself
            log.exception("polling Kafka failed; retrying")
            if await sleep_unless_stopped(stop, RETRY_SECONDS):
                return
            continue
        if not records:
            continue
        events = []
        for record in records:
            event, outcome = feed_event(record, parts.keyring)
            metrics.WEBHOOK_RECORDS.labels(outcome).inc()
            if event is not None:
                events.append(event)
            elif outcome not in ("not_in_feed",):
                log.warning(
                    "record skipped",
                    extra={"topic": record.topic, "partition": record.partition, "offset": record.offset,
                           "reason": outcome},
                )  # fmt: skip
        offsets = next_offsets(records)
        while True:
            try:
                await parts.ingestor.ingest(events, offsets)
                break
            except Exception:
                log.exception("recording webhook deliveries failed; retrying")
                if await sleep_unless_stopped(stop, RETRY_SECONDS):
                    return  # not recorded: the next owner of these partitions reads them again
        for (topic, partition), offset in offsets.items():
            metrics.WEBHOOK_CONSUMER_POSITION.labels(topic, str(partition)).set(offset)
        await consumer.commit_hint(offsets)


async def serve(
    settings: Settings, stop: asyncio.Event, *, resolve: Resolve | None = None, health: bool = True
) -> None:
    """Run the dispatcher until `stop` is set (the console script; the tests run it in-process)."""
    async with bootstrap.webhook_dispatcher(settings, resolve=resolve) as parts:

        async def ready() -> bool:
            return bool(await parts.pool.fetchval("SELECT 1") == 1)

        server = HealthServer(settings.webhooks_health_host, settings.webhooks_health_port, ready) if health else None
        if server is not None:
            await server.start()
        await parts.consumer.start()
        try:
            log.info("webhook dispatcher started", extra={"group_id": settings.webhooks_group_id})
            await asyncio.gather(consume(parts, stop), parts.deliveries.run(stop, retry_seconds=RETRY_SECONDS))
        finally:
            await parts.consumer.stop()
            if server is not None:
                await server.stop()


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop)
    await serve(settings, stop)


app = typer.Typer(add_completion=False, no_args_is_help=True, help="The webhook dispatcher of Taifa Mail.")


@app.callback()
def _group() -> None:
    """Sub-commands of taifa-webhooks."""


@app.command()
def run() -> None:
    """Consume the events and deliver the webhooks until SIGTERM (the Deployment's command)."""
    settings = Settings()
    # httpx's request lines (a customer's URL may hold a token) are kept to warnings (taifa_runtime.logs.ALWAYS_QUIET).
    configure_logging(SERVICE, settings.api_log_level)
    try:
        run_loop(_main(settings))
    except (InvalidKeyring, WebhookKeyError) as exc:
        log.error("cannot start: %s", exc)
        sys.exit(2)

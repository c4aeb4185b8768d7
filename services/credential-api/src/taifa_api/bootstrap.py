"""Settings -> the API's parts, wired once: the pool and its unit-of-work factory, DNS, and (to serve HTTP) Redis,
the rate limiter, the projection waiter and the outbox publisher with their background tasks.

Used by the FastAPI lifespan (entrypoints/http/app.py), by `taifa-api serve/migrate` and by every `taifa-admin`
subcommand (entrypoints/cli.py); everything opened here is closed by one `AsyncExitStack`, in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis
from taifa_events import topics
from taifa_events.signing import InvalidKeyring, Keyring
from taifa_runtime.logs import configure_logging as configure_json_logging
from taifa_runtime.redis import redis_client

from taifa_api.adapters import database, migrate
from taifa_api.adapters.dns import TxtResolver
from taifa_api.adapters.projection_waiter import RedisProjectionWaiter
from taifa_api.adapters.publisher import OutboxPublisher
from taifa_api.adapters.rate_limit import RateLimiter
from taifa_api.adapters.unit_of_work import unit_of_work_factory
from taifa_api.adapters.webhook_consumer import WebhookConsumer
from taifa_api.adapters.webhook_http import PinnedWebhookSender, Resolve, system_resolver
from taifa_api.adapters.webhook_resolver import host_check
from taifa_api.adapters.webhook_secrets import WebhookKeyError, WebhookSecretBox
from taifa_api.adapters.webhook_signing import StandardWebhooksSigner
from taifa_api.adapters.webhook_store import PostgresDeliveryStore
from taifa_api.application.ports import DnsResolver, ProjectionWaiter, UnitOfWorkFactory
from taifa_api.application.webhook_dispatch import DeliveryLoop, Ingestor
from taifa_api.application.webhooks import HostCheck
from taifa_api.settings import Settings

ADMIN_POOL_SIZE = 2  # one command at a time, plus the re-check's concurrent row locks queueing on a second
REDIS_TIMEOUT_SECONDS = 5.0
SHUTDOWN_SECONDS = 15.0  # the publisher's last batch; the waiter has nothing to drain


@dataclass
class Container:
    """The parts of one process. `redis`, `waiter`, `rate_limiter` exist only when serving HTTP; `publisher`
    only when it is enabled."""

    settings: Settings
    pool: asyncpg.Pool
    uow: UnitOfWorkFactory
    resolver: DnsResolver
    redis: aioredis.Redis | None = None
    waiter: ProjectionWaiter | None = None
    rate_limiter: RateLimiter | None = None
    publisher: OutboxPublisher | None = None
    webhook_secrets: WebhookSecretBox | None = None  # None without TAIFA_WEBHOOK_SECRET_KEYS: create/rotate 503
    webhook_host_check: HostCheck | None = None


SERVICE = "credential-api"


def configure_logging(settings: Settings) -> None:
    """The services' one log style: JSON lines on stderr (taifa_runtime.logs)."""
    configure_json_logging(SERVICE, settings.api_log_level)


def migrate_schema(settings: Settings) -> str:
    """Apply the API's migrations (blocking: call it outside an event loop); returns the version table."""
    migrate.upgrade(settings.database_url)
    return migrate.VERSION_TABLE


@contextlib.asynccontextmanager
async def command_side(settings: Settings) -> AsyncIterator[Container]:
    """What a `taifa-admin` subcommand needs: a small pool, its unit of work and DNS."""
    async with contextlib.AsyncExitStack() as stack:
        yield await _command_side(stack, settings, min_size=1, max_size=ADMIN_POOL_SIZE)


@contextlib.asynccontextmanager
async def http_service(settings: Settings) -> AsyncIterator[Container]:
    """Everything the HTTP API needs, with the projection waiter and the outbox publisher running until exit.

    Refuses (InvalidKeyring) before opening any connection when the publisher is enabled without a usable
    signing key: the projector would dead-letter every unsigned event.
    """
    keyring = settings.event_keyring() if settings.api_publisher_enabled else None
    async with contextlib.AsyncExitStack() as stack:
        container = await _command_side(
            stack, settings, min_size=settings.api_db_pool_min, max_size=settings.api_db_pool_max
        )
        container.redis = redis_client(settings.redis_url, timeout=REDIS_TIMEOUT_SECONDS)
        stack.push_async_callback(container.redis.aclose)
        waiter = RedisProjectionWaiter(container.redis)
        container.waiter = waiter
        container.rate_limiter = RateLimiter(
            container.redis, settings.api_rate_limit_requests, settings.api_rate_limit_window_seconds
        )
        stop = asyncio.Event()
        waiter_task = asyncio.create_task(waiter.run(stop), name="projection-waiter")
        tasks: list[asyncio.Task[None]] = []
        if keyring is not None:
            container.publisher = OutboxPublisher(
                settings.database_url,
                settings.kafka_client_options(),
                keyring=keyring,
                batch_size=settings.api_publisher_batch_size,
                idle_poll_seconds=settings.api_publisher_idle_poll_seconds,
                retry_seconds=settings.api_publisher_retry_seconds,
                log_check_seconds=settings.api_publisher_log_check_seconds,
            )
            tasks.append(asyncio.create_task(container.publisher.run(stop), name="outbox-publisher"))
        stack.push_async_callback(_stop, stop, waiter_task, tasks)
        yield container


@dataclass
class WebhookDispatcher:
    """The parts of `taifa-webhooks` (issue 17): the consumer that turns events into deliveries and the loop that
    sends them."""

    settings: Settings
    pool: asyncpg.Pool
    keyring: Keyring
    consumer: WebhookConsumer
    ingestor: Ingestor
    deliveries: DeliveryLoop


@contextlib.asynccontextmanager
async def webhook_dispatcher(settings: Settings, *, resolve: Resolve | None = None) -> AsyncIterator[WebhookDispatcher]:
    """Everything `taifa-webhooks` runs; `resolve` replaces the system resolver (tests point names anywhere).

    Refuses (InvalidKeyring, WebhookKeyError: messages for operators) before connecting when the event signing keys
    (to verify records) or the webhook secret keys (to sign deliveries) are missing.
    """
    if settings.event_signing_keys is None:
        raise InvalidKeyring("TAIFA_EVENT_SIGNING_KEYS must be set: the dispatcher delivers only signed events")
    keyring = Keyring.parse(settings.event_signing_keys.get_secret_value())
    if settings.webhook_secret_keys is None:
        raise WebhookKeyError("TAIFA_WEBHOOK_SECRET_KEYS must be set: the dispatcher decrypts the signing secrets")
    box = WebhookSecretBox.parse(settings.webhook_secret_keys.get_secret_value())
    async with contextlib.AsyncExitStack() as stack:
        pool = await database.create_pool(settings.database_url, min_size=1, max_size=settings.webhooks_db_pool_max)
        stack.push_async_callback(pool.close)
        store = PostgresDeliveryStore(pool, box)
        sender = PinnedWebhookSender(
            allow_http=settings.webhook_allow_http,
            connect_timeout=settings.webhooks_connect_timeout_seconds,
            request_timeout=settings.webhooks_request_timeout_seconds,
            resolve=resolve or system_resolver(settings.webhook_dns_timeout_seconds),
            max_connections=settings.webhooks_concurrency,
        )
        stack.push_async_callback(sender.aclose)
        deliveries = DeliveryLoop(
            store,
            sender,
            StandardWebhooksSigner(),
            concurrency=settings.webhooks_concurrency,
            lease_seconds=max(settings.webhooks_lease_seconds, settings.webhooks_request_timeout_seconds + 5),
            idle_poll_seconds=settings.webhooks_poll_seconds,
            retry_scale=settings.webhooks_retry_scale,
        )
        consumer = WebhookConsumer(
            settings.kafka_client_options(),
            [*topics.ALL_TOPICS, topics.USAGE_TOPIC],
            group_id=settings.webhooks_group_id,
            load_offsets=store.load_offsets,
            batch_size=settings.webhooks_batch_size,
        )
        yield WebhookDispatcher(settings, pool, keyring, consumer, Ingestor(store, deliveries.wake), deliveries)


async def _command_side(
    stack: contextlib.AsyncExitStack, settings: Settings, *, min_size: int, max_size: int
) -> Container:
    pool = await database.create_pool(settings.database_url, min_size=min_size, max_size=max_size)
    stack.push_async_callback(pool.close)
    resolver = TxtResolver(settings.dns_nameservers, settings.api_dns_timeout_seconds)
    return Container(
        settings=settings,
        pool=pool,
        uow=unit_of_work_factory(pool),
        resolver=resolver,
        webhook_secrets=webhook_secret_box(settings),
        webhook_host_check=host_check(
            allow_loopback=settings.webhook_allow_http, resolve_seconds=settings.webhook_dns_timeout_seconds
        ),
    )


def webhook_secret_box(settings: Settings) -> WebhookSecretBox | None:
    """The webhook secrets' key ring; WebhookKeyError (a message for operators) when the keys are malformed."""
    keys = settings.webhook_secret_keys
    return WebhookSecretBox.parse(keys.get_secret_value()) if keys is not None else None


async def _stop(stop: asyncio.Event, waiter_task: asyncio.Task[None], tasks: list[asyncio.Task[None]]) -> None:
    stop.set()
    waiter_task.cancel()  # nothing to drain: pending requests are answered already
    _, still_running = await asyncio.wait([*tasks, waiter_task], timeout=SHUTDOWN_SECONDS)
    for task in still_running:
        task.cancel()

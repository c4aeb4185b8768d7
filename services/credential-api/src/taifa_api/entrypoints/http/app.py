"""The FastAPI application: wiring (the one place adapters meet routes), lifespan, operations endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from taifa_api.adapters import database
from taifa_api.adapters.dns import TxtResolver
from taifa_api.adapters.projection import ProjectionWaiter
from taifa_api.adapters.publisher import OutboxPublisher
from taifa_api.adapters.rate_limit import RateLimiter
from taifa_api.domain.throttle import TokenBuckets
from taifa_api.entrypoints.http import errors
from taifa_api.entrypoints.http.auth import Authenticator, load_public_keys
from taifa_api.entrypoints.http.guard import RequestGuard
from taifa_api.entrypoints.http.routes import Services, router
from taifa_api.entrypoints.http.schemas import StatusOut
from taifa_api.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    load_public_keys(settings.api_jwt_public_keys)  # InvalidKeyConfiguration: refuse to start, before any connection

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Refuse to start publishing unsigned: without a usable key the projector would dead-letter every event.
        keyring = settings.event_keyring() if settings.api_publisher_enabled else None
        pool = await database.create_pool(
            settings.database_url, min_size=settings.api_db_pool_min, max_size=settings.api_db_pool_max
        )
        redis_client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        waiter = ProjectionWaiter(redis_client)
        app.state.services = Services(
            settings=settings,
            pool=pool,
            redis=redis_client,
            authenticator=Authenticator(settings, pool),
            rate_limiter=RateLimiter(
                redis_client, settings.api_rate_limit_requests, settings.api_rate_limit_window_seconds
            ),
            waiter=waiter,
            resolver=TxtResolver(settings.dns_nameservers, settings.api_dns_timeout_seconds),
        )
        stop = asyncio.Event()
        waiter_task = asyncio.create_task(waiter.run(stop), name="projection-waiter")
        tasks: list[asyncio.Task[None]] = []
        if keyring is not None:
            publisher = OutboxPublisher(
                settings.database_url,
                settings.kafka_client_options(),
                keyring=keyring,
                batch_size=settings.api_publisher_batch_size,
                idle_poll_seconds=settings.api_publisher_idle_poll_seconds,
                retry_seconds=settings.api_publisher_retry_seconds,
                log_check_seconds=settings.api_publisher_log_check_seconds,
            )
            app.state.publisher = publisher
            tasks.append(asyncio.create_task(publisher.run(stop), name="outbox-publisher"))
        try:
            yield
        finally:
            stop.set()
            waiter_task.cancel()  # nothing to drain: pending requests are answered already
            tasks.append(waiter_task)
            _, still_running = await asyncio.wait(tasks, timeout=15)
            for task in still_running:
                task.cancel()
            await redis_client.aclose()
            await pool.close()

    app = FastAPI(
        title="Taifa Mail credential API",
        version="1.0.0",
        description=(
            "SMTP credentials and domains of Taifa Mail. Authenticate with `Authorization: Bearer tm_...` (an API"
            " key) or the `taifa_session` cookie (with `X-CSRF-Token` on writes). Every error is"
            ' `{"error": {"code": ..., "message": ...}}`. The reference with examples is docs/api.md in the repository.'
        ),
        lifespan=lifespan,
    )
    app.add_middleware(
        RequestGuard,
        services=lambda: app.state.services,
        auth_throttle=TokenBuckets(settings.api_auth_failure_limit, settings.api_auth_failure_window_seconds),
    )
    if settings.api_trusted_proxies.strip():
        # Outermost: the guard's per-address throttle sees the client the trusted proxy names, never a header
        # sent by anybody else.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.api_trusted_proxies)
    errors.install(app)
    app.include_router(router)

    @app.get("/healthz", response_model=StatusOut, tags=["operations"])
    async def healthz() -> StatusOut:
        return StatusOut(status="ok")

    @app.get("/readyz", response_model=StatusOut, responses={503: {"model": StatusOut}}, tags=["operations"])
    async def readyz(request: Request) -> Any:
        svc: Services = request.app.state.services
        checks = {"postgres": "ok", "redis": "ok"}
        try:
            await asyncio.wait_for(svc.pool.fetchval("SELECT 1"), 2)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["postgres"] = type(exc).__name__
        try:
            await asyncio.wait_for(svc.redis.ping(), 2)
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = type(exc).__name__
        # Only PostgreSQL decides: every write commits there. Without Redis the API still serves; writes answer
        # `X-Taifa-Projection: pending` and the per-key limit falls back to a per-process one (guard.py).
        ready = checks["postgres"] == "ok"
        status = "unavailable" if not ready else "ok" if checks["redis"] == "ok" else "degraded"
        body = StatusOut(status=status, checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app

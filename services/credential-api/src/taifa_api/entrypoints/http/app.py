"""The FastAPI application: its lifespan (the parts from bootstrap.py), middleware, routes, operations endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from taifa_api import bootstrap
from taifa_api.bootstrap import Container
from taifa_api.domain.throttle import TokenBuckets
from taifa_api.entrypoints.http import errors
from taifa_api.entrypoints.http.audit_routes import router as audit_router
from taifa_api.entrypoints.http.auth import Authenticator, load_public_keys
from taifa_api.entrypoints.http.console.app import create_console
from taifa_api.entrypoints.http.console.rendering import SecurityHeaders
from taifa_api.entrypoints.http.default_headers import API_HEADERS, DefaultHeaders
from taifa_api.entrypoints.http.guard import RequestGuard
from taifa_api.entrypoints.http.lifecycle_routes import router as lifecycle_router
from taifa_api.entrypoints.http.request_context import RequestIdMiddleware
from taifa_api.entrypoints.http.routes import router
from taifa_api.entrypoints.http.schemas import StatusOut
from taifa_api.entrypoints.http.usage_routes import router as usage_router
from taifa_api.entrypoints.http.webhook_routes import router as webhook_router
from taifa_api.settings import Settings

CONSOLE_PATH = "/console"  # where the customers' console is mounted

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    load_public_keys(settings.api_jwt_public_keys)  # InvalidKeyConfiguration: refuse to start, before any connection

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with bootstrap.http_service(settings) as container:
            app.state.container = container
            app.state.authenticator = Authenticator(settings, container.pool)
            yield

    app = FastAPI(
        title="Taifa Mail credential API",
        version="1.0.0",
        description=(
            "SMTP credentials and domains of Taifa Mail. Authenticate with `Authorization: Bearer tm_...` (an API"
            " key) or the `taifa_session` cookie (with `X-CSRF-Token` on writes). Every error is"
            ' `{"error": {"code": ..., "message": ...}}`. The reference with examples is docs/api.md in the repository.'
        ),
        lifespan=lifespan,
        # `/v1/domains/` is a 404 with the JSON error body, not a redirect to a URL built from the Host header.
        redirect_slashes=False,
    )
    app.add_middleware(
        RequestGuard,
        container=lambda: app.state.container,
        authenticator=lambda: app.state.authenticator,
        auth_throttle=TokenBuckets(settings.api_auth_failure_limit, settings.api_auth_failure_window_seconds),
    )
    # Outside the guard: its refusals of console requests carry the console's CSP and the other headers too.
    app.add_middleware(SecurityHeaders, prefix=CONSOLE_PATH)
    app.add_middleware(DefaultHeaders, headers=API_HEADERS, prefix="/v1")
    app.add_middleware(RequestIdMiddleware)  # outside the guard: its refusals carry X-Request-ID too
    if settings.api_trusted_proxies.strip():
        # Outermost: the guard's per-address throttle sees the client the trusted proxy names, never a header
        # sent by anybody else.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.api_trusted_proxies)
    errors.install(app)
    app.include_router(router)
    app.include_router(lifecycle_router)
    app.include_router(usage_router)
    app.include_router(audit_router)
    # The customers' console (HTML, the same session cookie and use cases): entrypoints/http/console/.
    app.mount(CONSOLE_PATH, create_console(settings, lambda: app.state.container, lambda: app.state.authenticator))
    app.include_router(webhook_router)

    @app.get(CONSOLE_PATH, include_in_schema=False)
    async def console_home() -> RedirectResponse:
        # A path, not a URL built from the request's Host header (slashes are not redirected otherwise).
        return RedirectResponse(f"{CONSOLE_PATH}/", status_code=307)

    @app.get("/healthz", response_model=StatusOut, tags=["operations"])
    async def healthz() -> StatusOut:
        return StatusOut(status="ok")

    @app.get("/readyz", response_model=StatusOut, responses={503: {"model": StatusOut}}, tags=["operations"])
    async def readyz(request: Request) -> Any:
        parts: Container = request.app.state.container
        assert parts.redis is not None  # bootstrap.http_service always opens it
        checks = {"postgres": "ok", "redis": "ok"}
        try:
            await asyncio.wait_for(parts.pool.fetchval("SELECT 1"), 2)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["postgres"] = type(exc).__name__
        try:
            await asyncio.wait_for(parts.redis.ping(), 2)
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

"""The contract's error body and the one place that maps exceptions to it (docs/api.md, "Errors")."""

from __future__ import annotations

import logging
from typing import Any, Final

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from taifa_api.domain import errors as codes
from taifa_api.domain.errors import CommandRefused
from taifa_api.domain.webhooks import WEBHOOK_LIMIT_REACHED
from taifa_api.entrypoints.http.default_headers import API_HEADERS

log = logging.getLogger(__name__)

STATUS_OF_REFUSAL: Final[dict[str, int]] = {
    codes.DOMAIN_NOT_VERIFIED: 400,
    codes.CREDENTIAL_LIMIT_REACHED: 403,
    codes.DOMAIN_LIMIT_REACHED: 403,
    codes.NOT_FOUND: 404,
    codes.CREDENTIAL_EXISTS: 409,
    codes.CREDENTIAL_INACTIVE: 409,
    codes.ROTATION_IN_PROGRESS: 409,
    codes.LAST_SECRET: 409,
    codes.DOMAIN_TAKEN: 409,
    codes.DOMAIN_RELEASED: 409,
    codes.VALIDATION_ERROR: 422,
    WEBHOOK_LIMIT_REACHED: 403,
    codes.UNAVAILABLE: 503,
}

STANDARD_METHODS: Final = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")

MESSAGES: Final[dict[str, str]] = {
    codes.UNAUTHORIZED: "Missing or invalid authentication.",
    codes.CSRF_FAILED: "The X-CSRF-Token header does not match the taifa_csrf cookie.",
    codes.NOT_FOUND: "Not found.",
    codes.RATE_LIMITED: "Too many requests; retry later.",
    codes.PAYLOAD_TOO_LARGE: "The request body is too large.",
    codes.METHOD_NOT_ALLOWED: "Method not allowed.",
    codes.UNAVAILABLE: "A dependency is unavailable; retry later.",
    codes.INTERNAL_ERROR: "Internal error.",
}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """`{"error": {"code": ..., "message": ...}}`."""

    error: ErrorDetail


def error_response(
    status: int, code: str, message: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message or MESSAGES.get(code, code)}}
    return JSONResponse(body, status_code=status, headers=headers)


def unauthorized() -> JSONResponse:
    return error_response(401, codes.UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


def _validation_message(exc: RequestValidationError) -> str:
    """Field locations and reasons only: input values are never echoed (they could be secrets)."""
    parts = []
    for err in exc.errors()[:5]:
        location = ".".join(str(part) for part in err.get("loc", ()) if part != "body") or "body"
        parts.append(f"{location}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)[:500] or "Invalid request."


async def _on_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, codes.VALIDATION_ERROR, _validation_message(exc))


async def _on_refusal(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CommandRefused)
    return error_response(STATUS_OF_REFUSAL.get(exc.code, 400), exc.code, exc.detail)


def allowed_methods(app: Any, scope: Any) -> str:
    """Every method some route serves at this path, for the `Allow` header of a 405 (Starlette's own names only
    the first route's). Each standard method is tried against every route: included routers match that way too.
    """
    methods = {
        method
        for route in app.routes
        for method in STANDARD_METHODS
        if route.matches({**scope, "method": method})[0] == Match.FULL
    }
    methods.discard("HEAD")
    if "GET" in methods:
        methods.add("HEAD")  # the guard answers HEAD as GET without the body
    return ", ".join(sorted(methods))


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # FastAPI's "error parsing the body": the contract calls that malformed JSON
        return error_response(422, codes.VALIDATION_ERROR, "The body is not valid JSON.")
    code = {404: codes.NOT_FOUND, 405: codes.METHOD_NOT_ALLOWED, 413: codes.PAYLOAD_TOO_LARGE}.get(
        exc.status_code, codes.VALIDATION_ERROR if exc.status_code == 422 else "http_error"
    )
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request.app, request.scope)
    return error_response(exc.status_code, code, MESSAGES.get(code, "Request refused."), headers=headers)


async def _on_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("dependency unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return error_response(503, codes.UNAVAILABLE, headers={"Retry-After": "1"})


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
    # Answered outside the middleware (Starlette's outermost error handler): the headers the others get, here.
    return error_response(500, codes.INTERNAL_ERROR, headers=_API_HEADERS_TEXT)


_API_HEADERS_TEXT: Final = {name.decode(): value.decode() for name, value in API_HEADERS}

UNAVAILABLE_ERRORS: Final[tuple[type[Exception], ...]] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.InternalClientError,  # a pooled connection broken by a server restart
    # A deadlock or serialisation failure: PostgreSQL rolled the transaction back, nothing changed, a retry works.
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    RedisError,
)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(CommandRefused, _on_refusal)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    for error in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error, _on_unavailable)
    app.add_exception_handler(Exception, _on_unexpected)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error statuses a route can answer."""
    return {status: {"model": ErrorBody, "description": "Error"} for status in statuses}

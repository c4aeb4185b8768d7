"""The console as an application mounted at `/console` by the API (entrypoints/http/app.py): its routes, the
security headers of every response, and error pages in customer words (messages.py) instead of JSON bodies."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp

from taifa_api.bootstrap import Container
from taifa_api.domain import errors as codes
from taifa_api.domain.errors import CommandRefused
from taifa_api.entrypoints.http.auth import SESSION_COOKIE, Authenticator
from taifa_api.entrypoints.http.console import actions, dev_sign_in, history, messages, pages, rendering
from taifa_api.entrypoints.http.console.session import ConsoleRefusal, signed_in
from taifa_api.entrypoints.http.errors import STATUS_OF_REFUSAL, UNAVAILABLE_ERRORS
from taifa_api.settings import Settings

log = logging.getLogger(__name__)

# Form fields as the customer sees them (a validation error names fields, never their values).
FIELD_LABELS = {
    "name": "Domain name",
    "grace_period_seconds": "Grace period",
    "reason": "Reason",
    "allowed_cidrs": "Allowed networks",
    "expires_at": "Expiry",
    "messages_per_minute": "Messages per minute",
    "messages_per_day": "Messages per day",
    "limits": "Sending limits",
}


def _back(path: str) -> str:
    """The page a failed action came from: its domain or credential, else the domains list."""
    segments = path.strip("/").split("/")
    for kind in ("credentials", "domains"):
        if kind in segments and segments.index(kind) + 1 < len(segments):
            index = segments.index(kind)
            return "/console/" + "/".join(segments[index : index + 2])
    return "/console/"


def problem(request: Request, status: int, code: str, details: list[str] | None = None) -> Response:
    if status == 401:
        response = rendering.render(
            request, "signin.html", status=401, title="Sign in", signed_in=False, error=messages.customer_message(code)
        )
        response.headers["WWW-Authenticate"] = 'Cookie realm="taifa_session"'
        return response
    return rendering.render(
        request,
        "problem.html",
        status=status,
        title="That did not work",
        signed_in=bool(request.cookies.get(SESSION_COOKIE)),
        error=messages.customer_message(code),
        details=details or [],
        back=_back(request.url.path),
    )


def _labelled(detail: str) -> str:
    """`allowed_cidrs: ...` (a use case's detail names the field, never its value) in the form's words."""
    field, sep, reason = detail.partition(":")
    field = field.partition("[")[0]  # `allowed_cidrs[2]`: the list's field
    return f"{FIELD_LABELS[field]}:{reason}" if sep and field in FIELD_LABELS else detail


def _fields(exc: ValidationError | RequestValidationError) -> list[str]:
    named = []
    for error in exc.errors()[:5]:
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "path", "query")]
        field = next((FIELD_LABELS[part] for part in reversed(location) if part in FIELD_LABELS), None)
        reason = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        named.append(f"{field}: {reason}" if field else reason)
    return named


def create_console(
    settings: Settings, container: Callable[[], Container], authenticator: Callable[[], Authenticator]
) -> ASGIApp:
    """The console application, wrapped so that every response (a 500 from Starlette's outermost layer too)
    carries the security headers."""
    console = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, redirect_slashes=False)
    console.state.container = container
    console.state.authenticator = authenticator
    console.state.dev_sign_in = settings.api_dev_sign_in
    console.include_router(pages.router)
    console.include_router(actions.router)
    console.include_router(history.router)
    if settings.api_dev_sign_in:
        console.include_router(dev_sign_in.router)

    async def on_refusal(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleRefusal)
        response = problem(request, exc.status, exc.code)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    async def on_command_refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CommandRefused)
        details = [_labelled(exc.detail)] if exc.code == codes.VALIDATION_ERROR else []
        return problem(request, STATUS_OF_REFUSAL.get(exc.code, 400), exc.code, details)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ValidationError | RequestValidationError)
        if isinstance(exc, RequestValidationError):
            # Raised before the route ran, so before its session check: without a session the answer is the
            # sign-in page (401), as for a well-formed id, never a 404 or 422 that does not say how to sign in.
            try:
                await signed_in(request)
            except ConsoleRefusal as refusal:
                return await on_refusal(request, refusal)
            if request.method == "GET":
                return problem(request, 404, codes.NOT_FOUND)  # a malformed id in a page's address
        return problem(request, 422, codes.VALIDATION_ERROR, _fields(exc))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: codes.NOT_FOUND, 405: codes.METHOD_NOT_ALLOWED}.get(exc.status_code, codes.VALIDATION_ERROR)
        return problem(request, exc.status_code, code)

    async def on_unavailable(request: Request, exc: Exception) -> Response:
        log.warning("console: dependency unavailable on %s: %s", request.url.path, type(exc).__name__)
        response = problem(request, 503, codes.UNAVAILABLE)
        response.headers["Retry-After"] = "1"
        return response

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("console: unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return problem(request, 500, codes.INTERNAL_ERROR)

    console.add_exception_handler(ConsoleRefusal, on_refusal)
    console.add_exception_handler(CommandRefused, on_command_refused)
    console.add_exception_handler(ValidationError, on_invalid)
    console.add_exception_handler(RequestValidationError, on_invalid)
    console.add_exception_handler(StarletteHTTPException, on_http)
    for error in UNAVAILABLE_ERRORS:
        console.add_exception_handler(error, on_unavailable)
    console.add_exception_handler(Exception, on_unexpected)
    return rendering.SecurityHeaders(console)

"""Who is using the console: the `taifa_session` cookie checked exactly as the JSON API checks it (auth.py), the
same per-account rate limit, and the CSRF double submit (the form's `csrf_token` field or the `X-CSRF-Token`
header must equal the `taifa_csrf` cookie)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from taifa_api.application import sessions
from taifa_api.bootstrap import Container
from taifa_api.domain import errors as codes
from taifa_api.entrypoints.http import auth
from taifa_api.entrypoints.http.auth import Principal

CSRF_FIELD: Final = "csrf_token"
CSRF_TOKEN_BYTES: Final = 32


class ConsoleRefusal(Exception):
    """A request the console answers with an HTML page for the contract's `code` (messages.py has the words)."""

    def __init__(self, status: int, code: str, *, retry_after: int | None = None) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.retry_after = retry_after


def parts_of(request: Request) -> Container:
    found: Container = request.app.state.container()
    return found


async def signed_in(request: Request) -> Principal:
    """The account of the session cookie (never an API key: the console is for people), rate limited per account
    as the API is; ConsoleRefusal 401/429 otherwise."""
    cookie = request.cookies.get(auth.SESSION_COOKIE)
    authenticator: auth.Authenticator = request.app.state.authenticator()
    principal = await authenticator.authenticate(None, cookie) if cookie else None
    if principal is None:
        raise ConsoleRefusal(401, codes.UNAUTHORIZED)
    limiter = parts_of(request).rate_limiter
    assert limiter is not None  # bootstrap.http_service always builds it
    decision = await limiter.hit(principal.subject)
    if not decision.allowed:
        raise ConsoleRefusal(429, codes.RATE_LIMITED, retry_after=decision.retry_after)
    return principal


def check_csrf(request: Request, form: dict[str, str]) -> None:
    """Double submit, as on `/v1`: the header (sent by scripts) or the form field must equal the cookie."""
    cookie = request.cookies.get(auth.CSRF_COOKIE)
    presented = request.headers.get(auth.CSRF_HEADER) or form.get(CSRF_FIELD)
    if not auth.csrf_ok(cookie, presented):
        raise ConsoleRefusal(403, codes.CSRF_FAILED)


async def end_session(request: Request) -> None:
    """Sign-out: the session cookie's `jti` is revoked, so the token is refused from the next request on (a copy of
    the cookie included), not only forgotten by this browser. A token without a `jti` cannot be revoked one by one:
    it stays valid until its `exp` (docs/console.md; TAIFA_API_JWT_REQUIRE_JTI refuses such tokens)."""
    cookie = request.cookies.get(auth.SESSION_COOKIE)
    authenticator: auth.Authenticator = request.app.state.authenticator()
    claims = authenticator.decode_session(cookie) if cookie else None
    if claims is None or "jti" not in claims:
        return
    settings = parts_of(request).settings
    expires_at = datetime.fromtimestamp(claims["exp"], UTC)  # decode_session checked it is a number
    await sessions.revoke_session(parts_of(request).uow, claims["jti"], expires_at, settings.api_jwt_leeway_seconds)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(CSRF_TOKEN_BYTES)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_csrf_cookie(request: Request, response: Response, value: str) -> None:
    # Readable by the page's script (double submit), never sent to another site.
    response.set_cookie(auth.CSRF_COOKIE, value, path="/", samesite="strict", secure=_secure(request))


def set_session_cookies(request: Request, response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        auth.SESSION_COOKIE, token, max_age=max_age, path="/", httponly=True, samesite="lax", secure=_secure(request)
    )
    set_csrf_cookie(request, response, new_csrf_token())


def clear_session_cookies(response: Response) -> None:
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    response.delete_cookie(auth.CSRF_COOKIE, path="/")

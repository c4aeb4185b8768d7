"""Development only (TAIFA_API_DEV_SIGN_IN, on in `make dev`): the one-time sign-in link of `taifa-admin session
sign-in-link` becomes the `taifa_session` and `taifa_csrf` cookies. Absent unless the setting is on.

The link opens a page with a button (a POST spends the token), so a link preview or prefetch cannot use it up.
The token's `jti` is spent through the session revocation use case: the first use records it, any later one
finds it recorded and is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from taifa_api.application import sessions
from taifa_api.entrypoints import session_tokens
from taifa_api.entrypoints.http.console import rendering
from taifa_api.entrypoints.http.console.session import ConsoleRefusal, parts_of, set_session_cookies

router = APIRouter()
INVALID = "sign_in_link_invalid"


@router.get("/dev/sign-in", response_class=Response)
async def sign_in_page(request: Request) -> Response:
    token = request.query_params.get("token", "")
    if session_tokens.read_sign_in_token(parts_of(request).settings, token) is None:
        raise ConsoleRefusal(401, INVALID)
    return rendering.render(request, "dev_sign_in.html", title="Sign in (development)", signed_in=False, token=token)


@router.post("/dev/sign-in", response_class=Response)
async def sign_in(request: Request) -> Response:
    form = dict(parse_qsl((await request.body()).decode("utf-8", errors="replace"), max_num_fields=5))
    settings = parts_of(request).settings
    found = session_tokens.read_sign_in_token(settings, form.get("token", ""))
    if found is None:
        raise ConsoleRefusal(401, INVALID)
    expires_at = datetime.fromtimestamp(found.expires_at, UTC)
    first_use = await sessions.revoke_session(
        parts_of(request).uow, found.jti, expires_at, settings.api_jwt_leeway_seconds
    )
    if not first_use:
        raise ConsoleRefusal(401, INVALID)
    session = session_tokens.mint_session(settings, found.account_id)
    response = RedirectResponse("/console/", status_code=303)
    set_session_cookies(request, response, session.token, settings.api_jwt_max_lifetime_seconds)
    return response

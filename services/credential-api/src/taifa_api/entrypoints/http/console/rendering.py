"""Pages and assets of the console: the Jinja2 environment (autoescaped), fingerprinted static files served with
long cache lifetimes, and the security headers every console response carries."""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp

from taifa_api.entrypoints.http import auth
from taifa_api.entrypoints.http.console import messages
from taifa_api.entrypoints.http.console.session import new_csrf_token, set_csrf_cookie
from taifa_api.entrypoints.http.default_headers import DefaultHeaders

HERE: Final = Path(__file__).parent
STATIC_PREFIX: Final = "/console/static/"

# Scripts and styles from this origin only (no inline script, no inline style), nothing embeds the console, forms
# post only here. Inline SVG charts use presentation attributes, which no CSP directive concerns.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Final[list[tuple[bytes, bytes]]] = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
IMMUTABLE: Final = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str


def _load_assets() -> tuple[dict[str, str], dict[str, Asset]]:
    """`console.js` -> `console.<hash>.js`: a changed file gets a new name, so a year-long cache is safe."""
    urls: dict[str, str] = {}
    served: dict[str, Asset] = {}
    for path in sorted((HERE / "static").iterdir()):
        if not path.is_file():
            continue
        body = path.read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:12]
        fingerprinted = f"{path.stem}.{digest}{path.suffix}"
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if media_type.startswith("text/") or media_type.endswith("javascript"):
            media_type += "; charset=utf-8"
        urls[path.name] = STATIC_PREFIX + fingerprinted
        served[fingerprinted] = Asset(body, media_type)
    return urls, served


ASSET_URLS, ASSETS = _load_assets()


def static_url(name: str) -> str:
    return ASSET_URLS[name]


def asset_response(fingerprinted: str) -> Response | None:
    asset = ASSETS.get(fingerprinted)
    if asset is None:
        return None
    return Response(asset.body, media_type=asset.media_type, headers={"Cache-Control": IMMUTABLE})


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "never"


ENVIRONMENT: Final = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENVIRONMENT.globals["static"] = static_url
ENVIRONMENT.filters["when"] = _when


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page; `notice` from the query string names one of the fixed notices (never text from the URL)."""
    context.setdefault("signed_in", True)
    context.setdefault("error", None)
    context.setdefault("notice", messages.NOTICES.get(request.query_params.get("notice", "")))
    context.setdefault("dev_sign_in", bool(request.app.state.dev_sign_in))
    fresh_csrf = context["signed_in"] and not request.cookies.get(auth.CSRF_COOKIE)
    token = new_csrf_token() if fresh_csrf else request.cookies.get(auth.CSRF_COOKIE, "")
    body = ENVIRONMENT.get_template(template).render(request=request, csrf_token=token, **context)
    response = HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})
    if fresh_csrf:  # a session from the platform's sign-in without the CSRF cookie yet
        set_csrf_cookie(request, response, token)
    return response


class SecurityHeaders(DefaultHeaders):
    """Adds the console's security headers to every response under it, error pages included. With `prefix`
    (the whole app's middleware), only to responses for that path and below: the refusals that come before the
    mounted console (the guard's 405 and 413, the redirect of `/console` to `/console/`) carry them too."""

    def __init__(self, app: ASGIApp, prefix: str | None = None) -> None:
        super().__init__(app, SECURITY_HEADERS, prefix)

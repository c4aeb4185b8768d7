"""The console application without a database: what it answers before any read (no session, unknown pages, the
development sign-in switched off or given a bad token), and the headers every one of those answers carries."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from taifa_api.entrypoints.http.auth import Principal
from taifa_api.entrypoints.http.console.app import create_console
from taifa_api.entrypoints.http.console.rendering import CONTENT_SECURITY_POLICY, static_url
from taifa_api.settings import Settings


class _Client:
    """Requests straight into the console's ASGI application (no server, no database)."""

    def __init__(self, console: Any) -> None:
        self.console = console

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.console)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(send())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._send("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._send("POST", path, **kwargs)


def _client(**settings: object) -> _Client:
    configured = Settings(**settings)  # type: ignore[arg-type]
    parts = SimpleNamespace(settings=configured)  # only the settings are read before a session is found
    return _Client(create_console(configured, lambda: parts, lambda: None))  # type: ignore[arg-type,return-value]


def _secured(response) -> None:
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path", ["/", "/smtp", "/events", "/webhooks", "/credentials/7d1f0a52-4d8e-4ad4-9b53-7a4c0b3e1a10"]
)
def test_without_a_session_every_page_is_a_401_that_says_how_to_sign_in(path: str) -> None:
    response = _client().get(path)
    assert response.status_code == 401
    assert "Sign in" in response.text and "Traceback" not in response.text
    assert response.headers["cache-control"] == "no-store"
    _secured(response)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/domains/not-a-uuid"), ("GET", "/credentials/123"), ("POST", "/domains/not-a-uuid/verify")],
)
def test_without_a_session_a_malformed_id_still_gets_the_sign_in_page(method: str, path: str) -> None:
    # The id's validation runs before the route's session check: it must not answer first with a 404 or a 422.
    response = _client()._send(method, path)
    assert response.status_code == 401
    assert "Sign in" in response.text
    _secured(response)


def test_a_change_without_a_session_is_refused_before_anything_is_read() -> None:
    response = _client().post(
        "/credentials/7d1f0a52-4d8e-4ad4-9b53-7a4c0b3e1a10/deactivate", data={"confirm_name": "x"}
    )
    assert response.status_code == 401
    _secured(response)


def test_an_api_key_does_not_sign_in_to_the_console() -> None:
    response = _client().get("/", headers={"Authorization": "Bearer tm_" + "a" * 43})
    assert response.status_code == 401


def test_unknown_pages_and_assets_are_404_pages_with_the_same_headers() -> None:
    client = _client()
    for path in ("/nope", "/static/console.js", "/static/console.0000.js"):
        response = client.get(path)
        assert response.status_code in (401, 404), path
        _secured(response)
    asset = client.get(static_url("console.css").removeprefix("/console"))
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
    _secured(asset)


def test_the_development_sign_in_is_absent_unless_switched_on() -> None:
    assert _client().get("/dev/sign-in", params={"token": "x"}).status_code == 404
    assert _client().post("/dev/sign-in", data={"token": "x"}).status_code in (404, 405)


def test_a_bad_sign_in_token_gets_the_sign_in_page_and_no_cookie() -> None:
    client = _client(api_dev_sign_in=True, api_jwt_secret="k" * 40)
    for response in (
        client.get("/dev/sign-in", params={"token": "not-a-token"}),
        client.post("/dev/sign-in", data={"token": "not-a-token"}),
    ):
        assert response.status_code == 401
        assert "not valid any more" in response.text
        assert "set-cookie" not in response.headers
        _secured(response)


class _SignedIn:
    """A session check that finds a signed-in account (no token is verified: nothing here reads the database)."""

    def __init__(self) -> None:
        self.account = uuid.uuid4()

    async def authenticate(self, *_: object) -> Principal:
        return Principal(self.account, f"account:{self.account}", True)


class _Unlimited:
    async def hit(self, *_: object) -> SimpleNamespace:
        return SimpleNamespace(allowed=True, retry_after=0)


@pytest.mark.parametrize(
    ("action", "field"),
    [("rotate", "grace_period_seconds"), ("restrictions", "messages_per_minute"), ("restrictions", "messages_per_day")],
)
@pytest.mark.parametrize("value", ["²", "١٢", "１０"])  # digits to str.isdigit, not numbers the form takes
def test_a_number_field_with_other_unicode_digits_is_a_422_page_not_a_500(action: str, field: str, value: str) -> None:
    configured = Settings()
    parts = SimpleNamespace(settings=configured, rate_limiter=_Unlimited(), pool=None, uow=None)
    console = create_console(configured, lambda: parts, lambda: _SignedIn())  # type: ignore[arg-type,return-value]
    response = _Client(console).post(
        f"/credentials/{uuid.uuid4()}/{action}",
        data={field: value, "csrf_token": "tok"},
        headers={"cookie": "taifa_session=x; taifa_csrf=tok"},
    )
    assert response.status_code == 422, response.text
    _secured(response)

"""ASGI middleware in front of every route: method, body size, failed-auth throttle per client address,
authentication, rate limit and CSRF, in that order; then a `/v1` body must be strict JSON (below).

It runs before FastAPI parses anything, so an unauthenticated request gets 401 even with a malformed body,
and an oversized body gets 413 without being parsed. A method outside the fixed set gets 405 before
anything else (metrics included: the method is a label, so only known methods may become one). The
authenticated Principal goes into `scope["state"]["principal"]` for the routes' dependency.

A `/v1` request body is UTF-8 JSON in which no object names a member twice, else `422 validation_error`: the
parser behind the routes would guess UTF-16 or UTF-32 from the bytes and keep the last of two equal names, so
what a proxy or an audit log read could differ from what was applied. `HEAD` is answered as `GET` without the
body (RFC 9110 §9.3.2).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, Final

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taifa_api import metrics
from taifa_api.bootstrap import Container
from taifa_api.domain import errors as codes
from taifa_api.domain.throttle import RecentlySeen, TokenBuckets, client_group
from taifa_api.entrypoints.http import auth
from taifa_api.entrypoints.http.errors import UNAVAILABLE_ERRORS, allowed_methods, error_response, unauthorized

PROTECTED_PREFIX: Final = "/v1"
UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
KNOWN_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", *UNSAFE_METHODS})
OTHER_METHOD: Final = "OTHER"

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    pass


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        container: Callable[[], Container],
        authenticator: Callable[[], auth.Authenticator],
        auth_throttle: TokenBuckets,
    ) -> None:
        self.app = app
        self._container = container
        self._authenticator = authenticator
        self._auth_throttle = auth_throttle
        self._authenticated = RecentlySeen(ttl_seconds=300)
        self._fingerprint_key = secrets.token_bytes(32)  # per process: fingerprints match nothing stored anywhere

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method not in KNOWN_METHODS:
            metrics.HTTP_REQUESTS.labels(OTHER_METHOD, "unmatched", "405").inc()
            allow = allowed_methods(scope["app"], scope) if "app" in scope else ""
            await error_response(405, codes.METHOD_NOT_ALLOWED, headers={"Allow": allow})(scope, receive, send)
            return
        started = time.perf_counter()
        status_seen = {"status": 500}
        root_path = scope.get("root_path", "")
        if method == "HEAD":
            scope = {**scope, "method": "GET"}  # the GET's status and headers, without its body

        async def send_recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen["status"] = message["status"]
            elif method == "HEAD" and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        try:
            await self._guarded(scope, receive, send_recording)
        finally:
            route = scope.get("route")
            # A mounted application's (the console's) route paths are relative to the mount: prefix what routing
            # appended to root_path, so `/console/domains/{domain_id}` is not counted as the API's `/domains/...`.
            mount = scope.get("root_path", "")[len(root_path) :]
            template = mount + route.path if route is not None and hasattr(route, "path") else "unmatched"
            metrics.HTTP_REQUESTS.labels(method, template, str(status_seen["status"])).inc()
            metrics.HTTP_LATENCY.labels(method, template).observe(time.perf_counter() - started)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = self._container()
        limit = parts.settings.api_max_body_bytes
        connection = HTTPConnection(scope)
        declared = connection.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await error_response(413, codes.PAYLOAD_TOO_LARGE)(scope, receive, send)
            return
        if scope["path"].startswith(PROTECTED_PREFIX):
            refusal = await self._check_caller(scope, connection, parts)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        try:
            body = await _read_body(receive, limit)
        except BodyTooLarge:
            await error_response(413, codes.PAYLOAD_TOO_LARGE)(scope, receive, send)
            return
        if body and scope["path"].startswith(PROTECTED_PREFIX) and (problem := _not_strict_json(body, connection)):
            await error_response(422, codes.VALIDATION_ERROR, problem)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _check_caller(self, scope: Scope, connection: HTTPConnection, parts: Container) -> Any:
        # Every attempt takes a token of its client address before any lookup and only a failed one keeps it
        # spent, so parallel attempts cannot overshoot the limit. A credential that authenticated here lately
        # skips the reservation (a busy client's parallel requests are not failures); it is still checked below.
        authorization = connection.headers.get("authorization")
        session_cookie = connection.cookies.get(auth.SESSION_COOKIE)
        fingerprint = self._fingerprint(authorization, session_cookie)
        address = client_group(scope["client"][0] if scope.get("client") else None)
        now = time.monotonic()
        reserved = fingerprint is None or not self._authenticated.seen(fingerprint, now)
        if reserved and (wait := self._auth_throttle.take(address, now)):
            metrics.AUTH_THROTTLED.inc()
            return error_response(429, codes.RATE_LIMITED, headers={"Retry-After": str(wait)})
        try:
            principal = await self._authenticator().authenticate(authorization, session_cookie)
        except UNAVAILABLE_ERRORS as exc:
            if reserved:
                self._auth_throttle.give_back(address, now)  # our outage, not the caller's failure
            log.warning("authentication backend unavailable: %s", type(exc).__name__)
            return error_response(503, codes.UNAVAILABLE, headers={"Retry-After": "1"})
        if principal is None:
            if fingerprint is not None:
                self._authenticated.discard(fingerprint)  # revoked since: its failures count again
            metrics.AUTH_FAILURES.inc()
            return unauthorized()
        if reserved:
            self._auth_throttle.give_back(address, now)
        if fingerprint is not None:
            self._authenticated.add(fingerprint, now)
        assert parts.rate_limiter is not None  # bootstrap.http_service always builds it
        decision = await parts.rate_limiter.hit(principal.subject)
        if not decision.allowed:
            metrics.RATE_LIMITED.inc()
            return error_response(429, codes.RATE_LIMITED, headers={"Retry-After": str(decision.retry_after)})
        if principal.via_cookie and scope["method"] in UNSAFE_METHODS:
            header = connection.headers.get(auth.CSRF_HEADER)
            if not auth.csrf_ok(connection.cookies.get(auth.CSRF_COOKIE), header):
                return error_response(403, codes.CSRF_FAILED)
        scope.setdefault("state", {})["principal"] = principal
        return None

    def _fingerprint(self, authorization: str | None, session_cookie: str | None) -> bytes | None:
        """A keyed hash of the presented credential (never the credential itself), or None without one."""
        presented = authorization if authorization is not None else session_cookie
        if not presented:
            return None
        return hashlib.blake2b(presented.encode(), key=self._fingerprint_key, digest_size=16).digest()


class _RepeatedName(ValueError):
    pass


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise _RepeatedName()
    return found


def _not_strict_json(body: bytes, connection: HTTPConnection) -> str | None:
    """Why a JSON body is refused, or None. A body that is not JSON at all is left to the routes' own 422."""
    charset = connection.headers.get("content-type", "").lower().partition("charset=")[2].split(";")[0].strip(' "')
    if charset and charset not in ("utf-8", "utf8"):
        return "The body must be UTF-8 JSON."
    if b"\x00" in body:
        # JSON text never holds a raw NUL; UTF-16/32 without a byte order mark is ASCII and NULs, valid UTF-8 that
        # the routes' parser would read as UTF-16/32 after guessing from the NULs.
        return "The body must be UTF-8 JSON."
    try:
        text = body.decode("utf-8").removeprefix("\ufeff")  # a byte order mark may be ignored (RFC 8259 §8.1)
    except UnicodeDecodeError:
        return "The body must be UTF-8 JSON."
    try:
        json.loads(text, object_pairs_hook=_unique_names)
    except _RepeatedName:
        return "An object in the body names a member twice."
    except (ValueError, RecursionError):
        return None  # not JSON: the route answers with its own 422 (or takes no body)
    return None


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replayed() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed

"""Each request's id and its audit metadata (issue 17).

`RequestIdMiddleware` gives every HTTP request an id: the client's `X-Request-ID` when it is a plausible id
(1..200 visible ASCII characters), else a new UUID; it is echoed in the response's `X-Request-ID` (errors
included) and becomes the events' correlation id. `request_metadata` builds the `EventMetadata` that the
routes' unit-of-work factory stamps on every event a command appends: the caller as actor, the client's
address (the peer, or the client a trusted proxy names: ProxyHeadersMiddleware runs outside this one) and
the request id.
"""

from __future__ import annotations

import re
from typing import Final
from uuid import uuid4

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from taifa_events import EventMetadata

from taifa_api.entrypoints.http.auth import Principal

REQUEST_ID_HEADER: Final = "X-Request-ID"
_VALID_REQUEST_ID: Final = re.compile(r"[\x21-\x7e]{1,200}")
STATE_KEY: Final = "request_id"


def request_id_of(given: str | None) -> str:
    """The client's request id when valid, else a new one."""
    if given and _VALID_REQUEST_ID.fullmatch(given):
        return given
    return str(uuid4())


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", ()) if k == b"x-request-id"), b"")
        request_id = request_id_of(given.decode("latin-1"))
        scope.setdefault("state", {})[STATE_KEY] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


def scope_request_id(scope: Scope) -> str:
    """The id `RequestIdMiddleware` gave this request (a new one if it did not run)."""
    state = scope.setdefault("state", {})
    found = state.get(STATE_KEY)
    if not isinstance(found, str):
        found = state[STATE_KEY] = str(uuid4())
    return found


def request_metadata(scope: Scope, principal: Principal) -> EventMetadata:
    client = scope.get("client")
    return EventMetadata(
        actor=principal.actor(), source_ip=client[0] if client else None, request_id=scope_request_id(scope)
    )

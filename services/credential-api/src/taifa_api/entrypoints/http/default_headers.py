"""Response headers added to every response of a path and below, unless the response sets them itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The REST API's responses: a created credential's password, a webhook's signing secret and an account's API key
# are in response bodies, and no browser, proxy or client library may keep one (as the console's pages).
API_HEADERS: Final[list[tuple[bytes, bytes]]] = [(b"cache-control", b"no-store")]


class DefaultHeaders:
    """Adds `headers` to every HTTP response; with `prefix`, only to those for that path and below."""

    def __init__(self, app: ASGIApp, headers: Sequence[tuple[bytes, bytes]], prefix: str | None = None) -> None:
        self.app = app
        self.headers = list(headers)
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope["type"] != "http" or (
            self.prefix is not None and path != self.prefix and not path.startswith(self.prefix + "/")
        ):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in self.headers if name not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)

"""The operations HTTP port every non-HTTP service exposes: /healthz, /readyz and /metrics.

prometheus_client's threaded WSGI server does the HTTP; readiness is the service's own async check,
run on the service's event loop with a deadline (any failure or a timeout means "not ready").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

ReadyCheck = Callable[[], Awaitable[bool]]
# A header tuple, wrapped in a new list per response: wsgiref appends Content-Length to the list it is given.
JSON = ("Content-Type", "application/json")
# How often the serving thread looks for a stop request: `stop()` waits up to this long (socketserver's default,
# 0.5 s, was half a second added to every service's shutdown and to each of the tests that start one).
POLL_SECONDS = 0.05


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


class HealthServer:
    """`/healthz` (the process answers), `/readyz` (`ready()` holds), `/metrics` (the default registry)."""

    def __init__(self, host: str, port: int, ready: ReadyCheck, *, ready_timeout: float = 2.0) -> None:
        self.host = host
        self.port = port
        self.ready = ready
        self.ready_timeout = ready_timeout
        self._metrics = make_wsgi_app()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ThreadingWSGIServer | None = None

    async def start(self) -> None:
        """Listen (port 0 picks a free one, then `port` tells which) and serve from a daemon thread."""
        self._loop = asyncio.get_running_loop()
        self._server = make_server(self.host, self.port, self.app, ThreadingWSGIServer, handler_class=_QuietHandler)
        self.port = self._server.server_port
        threading.Thread(
            target=self._server.serve_forever, args=(POLL_SECONDS,), name="health-http", daemon=True
        ).start()

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.shutdown)
            server.server_close()

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "GET":
            start_response("405 Method Not Allowed", [JSON, ("Allow", "GET")])
            return [b'{"status":"method not allowed"}']
        if path == "/healthz":
            start_response("200 OK", [JSON])
            return [b'{"status":"ok"}']
        if path == "/readyz":
            if self._is_ready():
                start_response("200 OK", [JSON])
                return [b'{"status":"ready"}']
            start_response("503 Service Unavailable", [JSON])
            return [b'{"status":"not ready"}']
        if path == "/metrics":
            result: Iterable[bytes] = self._metrics(environ, start_response)
            return result
        start_response("404 Not Found", [JSON])
        return [b'{"status":"not found"}']

    def _is_ready(self) -> bool:
        if self._loop is None or self._loop.is_closed():
            return False
        future = asyncio.run_coroutine_threadsafe(self._check(), self._loop)
        try:
            return future.result(self.ready_timeout + 0.5)
        except (concurrent.futures.TimeoutError, RuntimeError):
            future.cancel()
            return False

    async def _check(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.ready(), self.ready_timeout))
        except Exception:  # noqa: BLE001 - a failing dependency check means "not ready", never a 500
            return False

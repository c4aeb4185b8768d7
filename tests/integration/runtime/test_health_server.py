"""The shared operations port (taifa_runtime.health) over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest
from taifa_runtime.health import HealthServer


async def _get(port: int, path: str, method: str = "GET") -> tuple[int, bytes, str]:
    def call() -> tuple[int, bytes, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
                return response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type", "")

    return await asyncio.to_thread(call)


@pytest.fixture
async def server_with(request):
    servers: list[HealthServer] = []

    async def start(check) -> HealthServer:
        server = HealthServer("127.0.0.1", 0, check, ready_timeout=0.5)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


async def test_healthz_metrics_and_unknown_paths(server_with) -> None:
    async def ready() -> bool:
        return True

    server = await server_with(ready)
    # Repeated calls: each response carries its own, correct Content-Length.
    for _ in range(3):
        assert await _get(server.port, "/healthz") == (200, b'{"status":"ok"}', "application/json")
        assert (await _get(server.port, "/readyz"))[:2] == (200, b'{"status":"ready"}')
    status, body, content_type = await _get(server.port, "/metrics")
    assert status == 200 and b"python_info" in body and content_type.startswith("text/plain")
    assert (await _get(server.port, "/nope"))[0] == 404
    assert (await _get(server.port, "/healthz", method="POST"))[0] == 405


@pytest.mark.parametrize("outcome", ["false", "raises", "hangs"])
async def test_readyz_is_503_when_the_check_fails_raises_or_hangs(server_with, outcome: str) -> None:
    async def ready() -> bool:
        if outcome == "raises":
            raise ConnectionError("dependency down")
        if outcome == "hangs":
            await asyncio.Event().wait()
        return False

    server = await server_with(ready)
    status, body, _ = await _get(server.port, "/readyz")
    assert (status, body) == (503, b'{"status":"not ready"}')
    assert (await _get(server.port, "/healthz"))[0] == 200, "liveness does not depend on readiness"

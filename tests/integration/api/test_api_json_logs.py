"""The API process logs in the services' one style: every line of `taifa-api serve` is a JSON object.

uvicorn's own lines (start-up, the access log) included: a log pipeline parses one format, and a
request line cannot forge another record, since its text is a JSON string.
"""

from __future__ import annotations

import asyncio
import json

import httpx
from api_support import venv_bin
from taifa_localstack import ServiceProcess, free_port


async def test_every_line_of_the_api_log_is_json_including_uvicorns_access_log(api_db, api_redis, tmp_path) -> None:
    port = free_port()
    env = {
        "TAIFA_DATABASE_URL": api_db,
        "TAIFA_REDIS_URL": api_redis,
        "TAIFA_API_PORT": str(port),
        "TAIFA_API_HOST": "127.0.0.1",
        "TAIFA_API_PUBLISHER_ENABLED": "false",
        "TAIFA_API_LOG_LEVEL": "info",
    }
    server = ServiceProcess(
        "taifa-api", [venv_bin("taifa-api"), "serve"], tmp_path, env=env, ready_url=f"http://127.0.0.1:{port}/readyz"
    )
    try:
        await asyncio.to_thread(server.start)
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"http://127.0.0.1:{port}/healthz?probe=%22%0Aforged")
        assert response.status_code == 200
    finally:
        await asyncio.to_thread(server.stop)

    records = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.strip()]
    assert records and all(r["service"] == "credential-api" for r in records)
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert any("GET /healthz" in r["message"] for r in access), records

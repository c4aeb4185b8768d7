"""Operations endpoints, and error hygiene when a dependency is down (D14: generic 503, no SQL, no traceback)."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import tempfile
import uuid
from pathlib import Path

from api_support import running_api, venv_bin
from taifa_api.adapters import migrate
from taifa_api.entrypoints.http.console.rendering import CONTENT_SECURITY_POLICY
from taifa_localstack import Postgres, run_once


async def test_healthz_readyz_metrics_and_openapi(api) -> None:
    assert (await api.client.get("/healthz")).json()["status"] == "ok"
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}
    tenant = await api.tenant()
    await api.client.get("/v1/domains", headers=tenant.headers)
    metrics = await api.client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert 'taifa_api_http_requests_total{method="GET",route="/v1/domains",status="200"}' in metrics.text
    # The console is mounted at /console: its routes are counted under their full path, not the API's.
    assert (await api.client.get(f"/console/domains/{uuid.uuid4()}")).status_code == 401
    metrics = await api.client.get("/metrics")
    assert 'route="/console/domains/{domain_id}",status="401"}' in metrics.text
    assert 'route="/domains/{domain_id}"' not in metrics.text
    schema = (await api.client.get("/openapi.json")).json()
    assert set(schema["paths"]) >= {
        "/v1/smtp/credentials",
        "/v1/smtp/credentials/{credential_id}",
        "/v1/domains",
        "/v1/domains/{domain_id}",
        "/v1/domains/{domain_id}/verify",
    }
    assert set(schema["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyCookie"}
    listed = schema["components"]["schemas"]["CredentialOut"]["properties"]
    assert "password" not in listed and "secret_hash" not in listed


async def test_database_down_gives_a_generic_503_and_readyz_says_not_ready(make_settings) -> None:
    # Outside pytest's temp root: a concurrent pytest session resets that root to 0700, which would lock
    # the unprivileged postgres user out of its data directory on restart.
    workdir = Path(tempfile.mkdtemp(prefix="taifa-api-pg-"))
    postgres = Postgres(workdir)
    await asyncio.to_thread(postgres.start)
    try:
        await asyncio.to_thread(migrate.upgrade, postgres.url)
        await asyncio.to_thread(
            run_once, [venv_bin("taifa-projector"), "migrate"], env={"TAIFA_DATABASE_URL": postgres.url}
        )
        async with running_api(make_settings(database_url=postgres.url)) as api:
            tenant = await api.tenant()
            domain = await api.verified_domain(tenant)
            # Fast shutdown (SIGINT): connections are cut at once, committed work is kept.
            os.kill(postgres.pid, signal.SIGINT)
            await asyncio.to_thread(postgres.stop)
            responses = [
                await api.client.get("/v1/domains", headers=tenant.headers),
                await api.credential(tenant, domain["id"]),
                await api.client.delete(f"/v1/smtp/credentials/{uuid.uuid4()}", headers=tenant.headers),
            ]
            for response in responses:
                assert response.status_code == 503, response.text
                assert response.json() == {
                    "error": {"code": "unavailable", "message": "A dependency is unavailable; retry later."}
                }
                assert response.headers["Retry-After"]
            ready = await api.client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["postgres"] != "ok"
            # Back up: the same pool recovers without a restart of the API.
            await asyncio.to_thread(postgres.start)
            async with asyncio.timeout(20):
                while (await api.client.get("/v1/domains", headers=tenant.headers)).status_code != 200:
                    await asyncio.sleep(0.2)
            assert (await api.credential(tenant, domain["id"])).status_code == 201
    finally:
        await asyncio.to_thread(postgres.stop)
        shutil.rmtree(workdir, ignore_errors=True)


async def test_redis_down_does_not_block_writes_and_marks_projection_pending(make_settings) -> None:
    async with running_api(make_settings(redis_url="redis://127.0.0.1:1/0")) as api:
        tenant = await api.tenant()
        response = await api.client.post("/v1/domains", json={"name": "noredis.example"}, headers=tenant.headers)
        assert response.status_code == 201
        assert response.headers["X-Taifa-Projection"] == "pending"


async def test_readyz_stays_ready_with_redis_down_and_reports_it_degraded(make_settings) -> None:
    """Writes need only PostgreSQL: an unreachable Redis degrades read-your-writes and rate limits, no more."""
    async with running_api(make_settings(redis_url="redis://127.0.0.1:1/0")) as api:
        ready = await api.client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["postgres"] == "ok" and ready.json()["checks"]["redis"] != "ok"


async def test_unknown_methods_get_405_and_never_become_metric_labels(api) -> None:
    methods = [f"X{secrets.token_hex(6).upper()}" for _ in range(50)]
    for method in methods:
        response = await api.client.request(method, "/v1/domains")
        assert response.status_code == 405, method
        assert response.json() == {"error": {"code": "method_not_allowed", "message": "Method not allowed."}}
        assert "GET" in response.headers["Allow"]
    page = (await api.client.get("/metrics")).text
    assert not [method for method in methods if method in page]
    assert 'taifa_api_http_requests_total{method="OTHER",route="unmatched",status="405"}' in page


async def test_refusals_before_the_console_carry_its_security_headers_and_the_apis_do_not(api) -> None:
    """The guard's 405 and 413 and the redirect of `/console` come before the mounted console: they carry its CSP
    and the other headers too (CONTRACT §9: every console response)."""
    too_big = str(api.settings.api_max_body_bytes + 1)
    answers = [
        await api.client.request("TRACE", "/console/"),
        await api.client.get("/console"),
        await api.client.post("/console/webhooks", headers={"content-length": too_big}, content=b"x"),
    ]
    assert [a.status_code for a in answers] == [405, 307, 413]
    for answer in answers:
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert answer.headers["x-frame-options"] == "DENY"
    for answer in (await api.client.request("TRACE", "/v1/domains"), await api.client.get("/v1/domains")):
        assert "content-security-policy" not in answer.headers

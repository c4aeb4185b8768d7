"""Every /v1 response carries `Cache-Control: no-store`, an unexpected error's 500 too (Starlette answers that one
outside the middleware)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from taifa_api.entrypoints.http import errors
from taifa_api.entrypoints.http.default_headers import API_HEADERS, DefaultHeaders


def _app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(DefaultHeaders, headers=API_HEADERS, prefix="/v1")
    errors.install(app)

    @app.get("/v1/ok")
    async def ok() -> dict[str, str]:
        return {"password": "shown once"}

    @app.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("a defect")

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def test_no_store_on_every_v1_response_the_500_included_and_not_elsewhere() -> None:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/v1/ok")).headers["Cache-Control"] == "no-store"
        failed = await client.get("/v1/boom")
        assert (failed.status_code, failed.headers["Cache-Control"]) == (500, "no-store")
        assert failed.json()["error"]["code"] == "internal_error"
        assert "Cache-Control" not in (await client.get("/healthz")).headers

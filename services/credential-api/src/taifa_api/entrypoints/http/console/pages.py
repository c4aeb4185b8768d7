"""The console's pages (GET): domains, one domain's credentials, one credential, the SMTP settings. They read the
same read models and shape credentials with the same body as the JSON API (credential_body.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from starlette.responses import Response

from taifa_api.adapters import read_models, usage_read_model
from taifa_api.domain import usage
from taifa_api.domain.credentials import DEACTIVATED
from taifa_api.domain.errors import NotFound
from taifa_api.entrypoints.http import credential_body
from taifa_api.entrypoints.http.console import history, rendering, views
from taifa_api.entrypoints.http.console.session import parts_of, signed_in
from taifa_api.entrypoints.http.routes import smtp_settings
from taifa_api.entrypoints.http.schemas import CredentialOut

router = APIRouter()

LIST_LIMIT = 1000  # one page of the API's lists: more domains than a plan allows


async def _credentials(request: Request, account_id: UUID) -> list[CredentialOut]:
    parts = parts_of(request)
    rows = await read_models.list_credentials(parts.pool, account_id, limit=LIST_LIMIT)
    smtp = smtp_settings(parts.settings)
    return [credential_body.from_read_model(row, smtp) for row in rows]


async def _domain(request: Request, account_id: UUID, domain_id: UUID) -> dict[str, Any]:
    found = await read_models.get_domain(parts_of(request).pool, account_id, domain_id)
    if found is None:
        raise NotFound()
    return found


@router.get("/", response_class=Response)
async def domains_page(request: Request) -> Response:
    who = await signed_in(request)
    domains = await read_models.list_domains(parts_of(request).pool, who.account_id, limit=LIST_LIMIT)
    credentials = await _credentials(request, who.account_id)
    live = {c.domain_id: c for c in reversed(credentials) if c.status != DEACTIVATED}
    return rendering.render(request, "domains.html", title="Domains", domains=domains, live=live)


@router.get("/domains/{domain_id}", response_class=Response)
async def domain_page(domain_id: UUID, request: Request) -> Response:
    who = await signed_in(request)
    domain = await _domain(request, who.account_id, domain_id)
    credentials = [c for c in await _credentials(request, who.account_id) if c.domain_id == domain_id]
    has_live = any(c.status != DEACTIVATED for c in credentials)
    return rendering.render(
        request, "domain.html", title=domain["name"], domain=domain, credentials=credentials, has_live=has_live
    )


@router.get("/credentials/{credential_id}", response_class=Response)
async def credential_page(credential_id: UUID, request: Request) -> Response:
    who = await signed_in(request)
    parts = parts_of(request)
    row = await read_models.get_credential(parts.pool, who.account_id, credential_id)
    if row is None:
        raise NotFound()
    credential = credential_body.from_read_model(row, smtp_settings(parts.settings))
    wanted = views.chart_range(datetime.now(UTC))
    found = await usage_read_model.usage(parts.pool, who.account_id, wanted, credential_id)
    chart = views.usage_chart(usage.series(wanted, found.get(credential_id, {})))
    activity, _ = await history.feed_page(request, who.account_id, credential_id, history.RECENT, None)
    return rendering.render(
        request,
        "credential.html",
        title=credential.username,
        credential=credential,
        chart=chart,
        activity=activity,
        grace_choices=views.GRACE_CHOICES,
        cidrs_text="\n".join(credential.allowed_cidrs),
        expires_value=credential.expires_at.strftime("%Y-%m-%dT%H:%M") if credential.expires_at else "",
    )


@router.get("/smtp", response_class=Response)
async def smtp_page(request: Request) -> Response:
    who = await signed_in(request)
    smtp = views.smtp_settings(parts_of(request).settings)
    credentials = [c for c in await _credentials(request, who.account_id) if c.status != DEACTIVATED]
    example = credentials[0] if credentials else None
    username = example.username if example else "USERNAME@your-domain.example"
    domain = example.domain if example else "your-domain.example"
    return rendering.render(
        request,
        "smtp.html",
        title="SMTP settings",
        smtp=smtp,
        credentials=credentials,
        snippets=views.snippets(smtp, username, domain),
    )


@router.get("/static/{name}", response_class=Response)
async def static_asset(name: str) -> Response:
    found = rendering.asset_response(name)
    if found is None:
        raise NotFound()
    return found

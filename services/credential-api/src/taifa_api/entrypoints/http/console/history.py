"""Read-only console pages over the audit trail and the webhook endpoints (docs/api.md, "Audit trail" and
"Webhooks"): the same read models and cursors as `GET /v1/events` and `GET /v1/webhooks`. Endpoints are created
and changed through the API; the console shows them."""

from __future__ import annotations

from typing import Any, Final
from uuid import UUID

from fastapi import APIRouter, Request
from starlette.responses import Response

from taifa_api.adapters import webhook_endpoints
from taifa_api.domain import paging
from taifa_api.entrypoints.http import audit_routes
from taifa_api.entrypoints.http.console import rendering
from taifa_api.entrypoints.http.console.session import parts_of, signed_in

router = APIRouter()
PAGE: Final = 50
RECENT: Final = 10  # a credential page's recent activity


async def feed_page(
    request: Request, account_id: UUID, subject_id: UUID | None, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """One page of the feed and the cursor of the next: the same read as `GET /v1/events`."""
    return await audit_routes.feed_page(parts_of(request).pool, account_id, subject_id, limit, cursor or None)


@router.get("/events", response_class=Response)
async def events_page(request: Request) -> Response:
    who = await signed_in(request)
    cursor = request.query_params.get("cursor")
    if cursor is not None and len(cursor) > paging.MAX_CURSOR_LENGTH:
        cursor = None
    events, next_cursor = await feed_page(request, who.account_id, None, PAGE, cursor)
    return rendering.render(request, "events.html", title="Activity", events=events, next_cursor=next_cursor)


@router.get("/webhooks", response_class=Response)
async def webhooks_page(request: Request) -> Response:
    who = await signed_in(request)
    endpoints = await webhook_endpoints.list_endpoints(parts_of(request).pool, who.account_id, after=None, limit=100)
    return rendering.render(request, "webhooks.html", title="Webhooks", endpoints=endpoints)

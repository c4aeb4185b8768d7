"""The `/v1/webhooks` routes (docs/api.md, "Webhooks"): create, list, read, delete, rotate the signing secret, and
the delivery history. Thin handlers as in routes.py: one use case (application/webhooks.py) or one read each.

Authentication, CSRF, rate limits and body size are the RequestGuard's, as for every `/v1` route; another
account's endpoint is the same 404 as a random id.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response

from taifa_api.adapters import webhook_endpoints
from taifa_api.adapters.webhook_secrets import WebhookSecretBox
from taifa_api.application import webhooks
from taifa_api.domain import errors as codes
from taifa_api.domain import paging
from taifa_api.domain.errors import CommandRefused, NotFound
from taifa_api.domain.webhooks import WebhookEndpoint
from taifa_api.entrypoints.http.errors import ErrorBody, documented
from taifa_api.entrypoints.http.paging_params import LIST_RESPONSES, Cursor, Limit, OneOfEach, by_columns, trim_page
from taifa_api.entrypoints.http.routes import Caller, Correlation, Parts, await_projection
from taifa_api.entrypoints.http.schemas import NoParameters
from taifa_api.entrypoints.http.webhook_schemas import (
    WebhookCreateIn,
    WebhookDeliveryOut,
    WebhookOut,
    WebhookWithSecretOut,
)

router = APIRouter(prefix="/v1", responses=documented(401, 413, 422, 429, 503), tags=["webhooks"])


def _endpoint_position(endpoint: WebhookEndpoint) -> paging.Position:
    return paging.Position(endpoint.created_at, endpoint.webhook_id)


class WebhooksNotConfigured(CommandRefused):
    """No TAIFA_WEBHOOK_SECRET_KEYS: a secret could not be stored encrypted, so none is issued (503)."""

    code = codes.UNAVAILABLE
    message = "Webhooks are not configured on this server; retry later."


def _secret_box(parts: Parts) -> WebhookSecretBox:
    if parts.webhook_secrets is None:
        raise WebhooksNotConfigured()
    return parts.webhook_secrets


def _with_secret(issued: webhooks.IssuedWebhook) -> WebhookWithSecretOut:
    """The 201 body of a creation or rotation: the only place the secret is shown."""
    return WebhookWithSecretOut(**WebhookOut.of(issued.endpoint).model_dump(), secret=issued.secret)


_WEBHOOK_LINKS: dict[str, Any] = {
    name: {"operationId": operation, "parameters": {"webhook_id": "$response.body#/id"}}
    for name, operation in (
        ("GetWebhook", "get_webhook"),
        ("RotateWebhookSecret", "rotate_webhook_secret"),
        ("ListWebhookDeliveries", "list_webhook_deliveries"),
        ("DeleteWebhook", "delete_webhook"),
    )
}
_LIMIT_REACHED = {"model": ErrorBody, "description": "`webhook_limit_reached`: the account has as many as allowed"}


@router.post(
    "/webhooks",
    status_code=201,
    response_model=WebhookWithSecretOut,
    operation_id="create_webhook",
    responses={
        **documented(403, 404),
        403: _LIMIT_REACHED,
        201: {"description": "Created; the signing secret is shown only here", "links": _WEBHOOK_LINKS},
    },
    summary="Add a webhook endpoint (the signing secret is shown only here)",
)
async def create_webhook(
    body: WebhookCreateIn, parts: Parts, who: Caller, corr: Correlation, response: Response
) -> WebhookWithSecretOut:
    settings = parts.settings
    assert parts.webhook_host_check is not None  # bootstrap always builds it
    outcome = await webhooks.create_webhook(
        parts.uow,
        who.account_id,
        body.url,
        body.events,
        _secret_box(parts),
        corr,
        allow_http=settings.webhook_allow_http,
        check_host=parts.webhook_host_check,
        max_endpoints=settings.webhook_max_endpoints_per_account,
    )
    await await_projection(parts, outcome.events, response)
    return _with_secret(outcome.value)


@router.get(
    "/webhooks",
    response_model=list[WebhookOut],
    operation_id="list_webhooks",
    responses=LIST_RESPONSES,
    summary="This account's webhook endpoints, newest first, one page at a time",
    dependencies=[OneOfEach],
)
async def list_webhooks(
    parts: Parts,
    who: Caller,
    request: Request,
    response: Response,
    limit: Limit = paging.DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> list[WebhookOut]:
    after = paging.decode_cursor("webhooks", cursor) if cursor is not None else None
    rows = await webhook_endpoints.list_endpoints(parts.pool, who.account_id, after=after, limit=limit + 1)
    page = trim_page("webhooks", rows, _endpoint_position, limit, request, response)
    return [WebhookOut.of(endpoint) for endpoint in page]


@router.get(
    "/webhooks/{webhook_id}",
    response_model=WebhookOut,
    operation_id="get_webhook",
    responses=documented(404),
    summary="One webhook endpoint",
)
async def get_webhook(webhook_id: UUID, parts: Parts, who: Caller) -> WebhookOut:
    endpoint = await webhook_endpoints.get_endpoint(parts.pool, who.account_id, webhook_id)
    if endpoint is None:
        raise NotFound()
    return WebhookOut.of(endpoint)


@router.delete(
    "/webhooks/{webhook_id}",
    status_code=204,
    response_class=Response,
    operation_id="delete_webhook",
    responses={**documented(403, 404), 204: {"description": "Deleted with its delivery history; nothing more is sent"}},
    summary="Delete a webhook endpoint",
)
async def delete_webhook(
    webhook_id: UUID, parts: Parts, who: Caller, corr: Correlation, _: NoParameters = None
) -> Response:
    outcome = await webhooks.delete_webhook(parts.uow, who.account_id, webhook_id, corr)
    response = Response(status_code=204)
    await await_projection(parts, outcome.events, response)
    return response


@router.post(
    "/webhooks/{webhook_id}/rotate-secret",
    status_code=201,
    response_model=WebhookWithSecretOut,
    operation_id="rotate_webhook_secret",
    responses={
        **documented(403, 404),
        201: {
            "description": "New secret, shown only here; the previous one signs too for 24 h",
            "links": _WEBHOOK_LINKS,
        },
    },
    summary="New signing secret; deliveries carry both signatures for 24 h",
)
async def rotate_webhook_secret(
    webhook_id: UUID, parts: Parts, who: Caller, corr: Correlation, response: Response, _: NoParameters = None
) -> WebhookWithSecretOut:
    outcome = await webhooks.rotate_webhook_secret(parts.uow, who.account_id, webhook_id, _secret_box(parts), corr)
    await await_projection(parts, outcome.events, response)
    return _with_secret(outcome.value)


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=list[WebhookDeliveryOut],
    operation_id="list_webhook_deliveries",
    responses={**LIST_RESPONSES, **documented(404)},
    summary="The endpoint's deliveries, newest first, with their latest attempts",
    dependencies=[OneOfEach],
)
async def list_webhook_deliveries(
    webhook_id: UUID,
    parts: Parts,
    who: Caller,
    request: Request,
    response: Response,
    limit: Limit = paging.DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> list[WebhookDeliveryOut]:
    after = paging.decode_cursor("webhook_deliveries", cursor) if cursor is not None else None
    rows = await webhook_endpoints.list_deliveries(parts.pool, who.account_id, webhook_id, after=after, limit=limit + 1)
    if rows is None:
        raise NotFound()
    page = trim_page("webhook_deliveries", rows, by_columns("id"), limit, request, response)
    return [WebhookDeliveryOut.of(row) for row in page]

"""The `/v1` routes: thin handlers that call one use case and shape its result (docs/api.md)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response, Security
from fastapi.security import APIKeyCookie, HTTPBearer
from taifa_events import Envelope

from taifa_api import metrics
from taifa_api.adapters import event_store, read_models
from taifa_api.application import use_cases
from taifa_api.application.request_context import with_metadata
from taifa_api.bootstrap import Container
from taifa_api.domain import paging
from taifa_api.domain.errors import NotFound
from taifa_api.domain.models import CredentialRecord, DomainRecord
from taifa_api.domain.verification import RECORD_TYPE
from taifa_api.entrypoints.http import credential_body
from taifa_api.entrypoints.http.auth import SESSION_COOKIE, Principal
from taifa_api.entrypoints.http.errors import ErrorBody, documented
from taifa_api.entrypoints.http.paging_params import LIST_RESPONSES, Cursor, Limit, OneOfEach, by_columns, trim_page
from taifa_api.entrypoints.http.request_context import request_metadata, scope_request_id
from taifa_api.entrypoints.http.schemas import (
    CredentialCreatedOut,
    CredentialCreateIn,
    CredentialOut,
    DomainCreateIn,
    DomainOut,
    NoParameters,
    SmtpSettingsOut,
    VerificationOut,
)
from taifa_api.settings import Settings

PROJECTION_HEADER = "X-Taifa-Projection"


# Declared for OpenAPI (and clients); the RequestGuard middleware has already authenticated the caller.
_bearer = HTTPBearer(auto_error=False, description="API key `tm_...`")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="Session JWT (+ X-CSRF-Token)")


def container(request: Request) -> Container:
    """The process's parts (bootstrap.http_service, opened by the app's lifespan); for an authenticated request,
    with a unit-of-work factory that records the caller, its address and the request id in every event."""
    found: Container = request.app.state.container
    principal = request.scope.get("state", {}).get("principal")
    if isinstance(principal, Principal):
        return dataclasses.replace(found, uow=with_metadata(found.uow, request_metadata(request.scope, principal)))
    return found


def caller(
    request: Request,
    _bearer_credentials: Annotated[Any, Security(_bearer)] = None,
    _cookie_value: Annotated[Any, Security(_cookie)] = None,
) -> Principal:
    principal = request.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):  # only reachable if the guard is not installed
        raise NotFound()
    return principal


def correlation_id(request: Request) -> str:
    """The request's id (X-Request-ID when valid, else generated; echoed in the response)."""
    return scope_request_id(request.scope)


Parts = Annotated[Container, Depends(container)]
Caller = Annotated[Principal, Depends(caller)]
Correlation = Annotated[str, Depends(correlation_id)]

router = APIRouter(prefix="/v1", responses=documented(401, 413, 422, 429, 503))


async def await_projection(
    parts: Container,
    events: list[Envelope[Any]],
    response: Response,
    *,
    unchanged: CredentialRecord | None = None,
) -> None:
    """Wait for every event of the command: they may be on different topics and partitions (a domain release
    deactivates credentials on another topic than the release itself), so the last one proves nothing alone.

    `unchanged`: the credential a command left as it was (a repeated DELETE, suspend, resume, PATCH, or the loser
    of two at once). Its answer states what an earlier command committed, so it waits until the relay's cache
    holds the credential's newest event: a 204 means refused from then on, whichever request got it."""
    for event in events:
        metrics.EVENTS_APPENDED.labels(event.event_type).inc()
    within = parts.settings.api_projection_wait_seconds
    assert parts.waiter is not None  # bootstrap.http_service always runs it
    if events:
        waits = [parts.waiter.wait_applied(event.event_id, within) for event in events]
    elif unchanged is not None:
        head = await event_store.stream_head(parts.pool, unchanged.credential_id)
        if head is None:
            return
        waits = [parts.waiter.wait_entry_at(unchanged.username, *head, within)]
    else:
        return
    applied = all(await asyncio.gather(*waits))
    metrics.PROJECTION_WAITS.labels("applied" if applied else "pending").inc()
    response.headers[PROJECTION_HEADER] = "applied" if applied else "pending"


def smtp_settings(settings: Settings) -> SmtpSettingsOut:
    return SmtpSettingsOut(
        host=settings.api_smtp_host, port=settings.api_smtp_port, encryption=settings.api_smtp_encryption
    )


def _domain_out(row: DomainRecord | dict[str, Any]) -> DomainOut:
    data = row if isinstance(row, dict) else row.__dict__
    return DomainOut(
        id=data["domain_id"],
        name=data["name"],
        status=data["status"],
        status_reason=data["status_reason"],
        verification=VerificationOut(
            type=RECORD_TYPE, name=data["verification_name"], value=data["verification_value"]
        ),
        created_at=data["created_at"],
        verified_at=data["verified_at"],
    )


# --- SMTP credentials ------------------------------------------------------------------------------------

CREDENTIAL_LINKS: dict[str, Any] = {
    name: {"operationId": operation, "parameters": {"credential_id": "$response.body#/id"}}
    for name, operation in (
        ("GetCredential", "get_credential"),
        ("GetCredentialUsage", "get_credential_usage"),
        ("ListCredentialEvents", "list_credential_events"),
        ("RotateCredential", "rotate_credential"),
        ("SuspendCredential", "suspend_credential"),
        ("ResumeCredential", "resume_credential"),
        ("ChangeCredentialRestrictions", "change_credential_restrictions"),
    )
}


@router.post(
    "/smtp/credentials",
    status_code=201,
    response_model=CredentialCreatedOut,
    operation_id="create_credential",
    responses={
        **documented(400, 403, 404, 409),
        201: {
            "description": "Created; the password is shown only here",
            "links": {
                "DeactivateCredential": {
                    "operationId": "deactivate_credential",
                    "parameters": {"credential_id": "$response.body#/id"},
                },
                **CREDENTIAL_LINKS,
                "RevokeCredentialSecret": {
                    "operationId": "revoke_credential_secret",
                    "parameters": {"credential_id": "$response.body#/id", "secret_id": "$response.body#/secrets/0/id"},
                },
            },
        },
    },
    summary="Create the SMTP credential of a verified domain (the password is shown only here)",
)
async def create_credential(
    body: CredentialCreateIn, parts: Parts, who: Caller, corr: Correlation, response: Response
) -> CredentialCreatedOut:
    limits = parts.settings.plan_limits
    outcome = await use_cases.create_credential(parts.uow, who.account_id, body.domain_id, limits, corr)
    await await_projection(parts, outcome.events, response)
    created = outcome.value
    shaped = credential_body.from_write_side(created.record, (created.secret,), smtp_settings(parts.settings))
    return CredentialCreatedOut(**shaped.model_dump(exclude={"deactivated_at"}), password=created.password)


@router.get(
    "/smtp/credentials",
    response_model=list[CredentialOut],
    operation_id="list_credentials",
    responses=LIST_RESPONSES,
    summary="This account's credentials, newest first, one page at a time",
    dependencies=[OneOfEach],
)
async def list_credentials(
    parts: Parts,
    who: Caller,
    request: Request,
    response: Response,
    limit: Limit = paging.DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> list[CredentialOut]:
    after = paging.decode_cursor("credentials", cursor) if cursor is not None else None
    rows = await read_models.list_credentials(parts.pool, who.account_id, after=after, limit=limit + 1)
    smtp = smtp_settings(parts.settings)
    page = trim_page("credentials", rows, by_columns("credential_id"), limit, request, response)
    return [credential_body.from_read_model(row, smtp) for row in page]


@router.delete(
    "/smtp/credentials/{credential_id}",
    status_code=204,
    response_class=Response,
    operation_id="deactivate_credential",
    responses=documented(403, 404),
    summary="Deactivate a credential for good",
)
async def deactivate_credential(
    credential_id: UUID, parts: Parts, who: Caller, corr: Correlation, _: NoParameters = None
) -> Response:
    outcome = await use_cases.deactivate_credential(parts.uow, who.account_id, credential_id, corr)
    response = Response(status_code=204)
    await await_projection(parts, outcome.events, response, unchanged=outcome.value)
    return response


_DOMAIN_LINKS = {
    "GetDomain": {"operationId": "get_domain", "parameters": {"domain_id": "$response.body#/id"}},
    "VerifyDomain": {"operationId": "verify_domain", "parameters": {"domain_id": "$response.body#/id"}},
    "CreateCredential": {"operationId": "create_credential", "requestBody": {"domain_id": "$response.body#/id"}},
}

# --- domains ---------------------------------------------------------------------------------------------


@router.post(
    "/domains",
    status_code=201,
    response_model=DomainOut,
    operation_id="register_domain",
    responses={
        **documented(403),
        200: {"model": DomainOut, "description": "The account already has this name"},
        403: {
            "model": ErrorBody,
            "description": "`domain_limit_reached`: the account holds as many domains as allowed",
        },
        201: {"description": "Registered, pending verification", "links": _DOMAIN_LINKS},
    },
    summary="Register a domain; publish the TXT record it returns, then verify",
)
async def register_domain(
    body: DomainCreateIn, parts: Parts, who: Caller, corr: Correlation, response: Response
) -> DomainOut:
    outcome = await use_cases.register_domain(
        parts.uow, who.account_id, body.name, corr, max_domains=parts.settings.api_max_domains_per_account
    )
    if not outcome.events:
        response.status_code = 200
    await await_projection(parts, outcome.events, response)
    return _domain_out(outcome.value)


@router.get(
    "/domains",
    response_model=list[DomainOut],
    operation_id="list_domains",
    responses=LIST_RESPONSES,
    summary="This account's domains (released ones left out), newest first, one page at a time",
    dependencies=[OneOfEach],
)
async def list_domains(
    parts: Parts,
    who: Caller,
    request: Request,
    response: Response,
    limit: Limit = paging.DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> list[DomainOut]:
    after = paging.decode_cursor("domains", cursor) if cursor is not None else None
    rows = await read_models.list_domains(parts.pool, who.account_id, after=after, limit=limit + 1)
    return [_domain_out(row) for row in trim_page("domains", rows, by_columns("domain_id"), limit, request, response)]


@router.get(
    "/domains/{domain_id}",
    response_model=DomainOut,
    operation_id="get_domain",
    responses=documented(404),
    summary="One domain",
)
async def get_domain(domain_id: UUID, parts: Parts, who: Caller) -> DomainOut:
    row = await read_models.get_domain(parts.pool, who.account_id, domain_id)
    if row is None:
        raise NotFound()
    return _domain_out(row)


@router.post(
    "/domains/{domain_id}/verify",
    response_model=DomainOut,
    operation_id="verify_domain",
    responses=documented(403, 404),
    summary="Look the verification TXT record up through DNS",
)
async def verify_domain(
    domain_id: UUID, parts: Parts, who: Caller, corr: Correlation, response: Response, _: NoParameters = None
) -> DomainOut:
    outcome = await use_cases.verify_domain(parts.uow, who.account_id, domain_id, parts.resolver.lookup_txt, corr)
    await await_projection(parts, outcome.events, response)
    return _domain_out(outcome.value)


@router.delete(
    "/domains/{domain_id}",
    status_code=204,
    response_class=Response,
    operation_id="release_domain",
    responses={
        **documented(403, 404),
        204: {"description": "Released: its credentials are deactivated and refused by the relay from now on"},
        404: {"model": ErrorBody, "description": "No such domain for this account (or already released)"},
    },
    summary="Release a domain: deactivate its credentials and free the name for other accounts",
)
async def release_domain(
    domain_id: UUID, parts: Parts, who: Caller, corr: Correlation, _: NoParameters = None
) -> Response:
    outcome = await use_cases.release_domain(parts.uow, domain_id, who.account_id, "owner", corr)
    response = Response(status_code=204)
    await await_projection(parts, outcome.events, response)
    return response

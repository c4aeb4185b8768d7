"""The credential lifecycle routes (docs/api.md, "Credential lifecycle"): read one credential, rotate, end a
previous secret's grace, suspend, resume, change restrictions. Thin handlers, as in routes.py: one use case
each, then the body from what the command left (plus the relay's usage the read model knows)."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Response

from taifa_api.adapters import read_models
from taifa_api.application import credential_lifecycle
from taifa_api.domain.errors import NotFound
from taifa_api.domain.lifecycle import DEFAULT_GRACE_SECONDS, RestrictionsPatch
from taifa_api.domain.models import CredentialState
from taifa_api.entrypoints.http import credential_body
from taifa_api.entrypoints.http.errors import UNAVAILABLE_ERRORS, ErrorBody, documented
from taifa_api.entrypoints.http.routes import (
    CREDENTIAL_LINKS,
    Caller,
    Correlation,
    Parts,
    await_projection,
    smtp_settings,
)
from taifa_api.entrypoints.http.schemas import (
    CredentialOut,
    CredentialPatchIn,
    CredentialRotatedOut,
    NoParameters,
    PreviousSecretOut,
    RotateIn,
    SuspendIn,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", responses=documented(401, 413, 422, 429, 503))

_INACTIVE = {"model": ErrorBody, "description": "`credential_inactive`: the credential is deactivated"}
_CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {**documented(403, 404), 409: _INACTIVE}


async def _body(parts: Parts, who: Caller, state: CredentialState) -> CredentialOut:
    """The body of a command that has committed. The read model only adds the relay's usage (`last_used_*`): if it
    cannot be read now (PostgreSQL gone right after the COMMIT), those fields are null, never a 503, which says that
    nothing changed (after a rotation, whose password is shown only here, a retry would meet `rotation_in_progress`
    and the password would be lost)."""
    try:
        usage = await read_models.get_credential(parts.pool, who.account_id, state.record.credential_id)
    except UNAVAILABLE_ERRORS as exc:
        log.warning("usage not read for a committed command's answer", extra={"error": type(exc).__name__})
        usage = None
    return credential_body.from_write_side(state.record, state.secrets, smtp_settings(parts.settings), usage)


@router.get(
    "/smtp/credentials/{credential_id}",
    response_model=CredentialOut,
    operation_id="get_credential",
    responses=documented(404),
    summary="One credential",
)
async def get_credential(credential_id: UUID, parts: Parts, who: Caller) -> CredentialOut:
    row = await read_models.get_credential(parts.pool, who.account_id, credential_id)
    if row is None:
        raise NotFound()
    return credential_body.from_read_model(row, smtp_settings(parts.settings))


@router.post(
    "/smtp/credentials/{credential_id}/rotate",
    status_code=201,
    response_model=CredentialRotatedOut,
    operation_id="rotate_credential",
    responses={
        **_CHANGE_RESPONSES,
        201: {
            "description": "Rotated; the new password is shown only here",
            "links": {
                **CREDENTIAL_LINKS,
                "RevokePreviousSecret": {
                    "operationId": "revoke_credential_secret",
                    "parameters": {
                        "credential_id": "$response.body#/id",
                        "secret_id": "$response.body#/previous_secret/id",
                    },
                },
            },
        },
        409: {
            "model": ErrorBody,
            "description": "`rotation_in_progress`: a previous secret is still in its grace period; "
            "`credential_inactive`: the credential is deactivated",
        },
    },
    summary="New password, same username; the previous one keeps working for the grace period",
)
async def rotate_credential(
    credential_id: UUID,
    parts: Parts,
    who: Caller,
    corr: Correlation,
    response: Response,
    body: Annotated[RotateIn | None, Body()] = None,
) -> CredentialRotatedOut:
    grace = body.grace_period_seconds if body is not None else DEFAULT_GRACE_SECONDS
    outcome = await credential_lifecycle.rotate_credential(parts.uow, who.account_id, credential_id, grace, corr)
    await await_projection(parts, outcome.events, response)
    rotated = outcome.value
    shaped = await _body(parts, who, CredentialState(rotated.record, rotated.secrets))
    assert rotated.previous.expires_at is not None  # a rotation always sets it
    return CredentialRotatedOut(
        **shaped.model_dump(),
        password=rotated.password,
        previous_secret=PreviousSecretOut(id=rotated.previous.secret_id, expires_at=rotated.previous.expires_at),
    )


@router.delete(
    "/smtp/credentials/{credential_id}/secrets/{secret_id}",
    status_code=204,
    response_class=Response,
    operation_id="revoke_credential_secret",
    responses={
        **_CHANGE_RESPONSES,
        204: {"description": "The secret is refused from now on (already expired or revoked: 204 again, no event)"},
        409: {
            "model": ErrorBody,
            "description": "`last_secret`: the newest secret cannot be deleted; "
            "`credential_inactive`: the credential is deactivated",
        },
    },
    summary="End a previous secret's grace period at once",
)
async def revoke_secret(
    credential_id: UUID, secret_id: UUID, parts: Parts, who: Caller, corr: Correlation, _: NoParameters = None
) -> Response:
    outcome = await credential_lifecycle.revoke_secret(parts.uow, who.account_id, credential_id, secret_id, corr)
    response = Response(status_code=204)
    await await_projection(parts, outcome.events, response, unchanged=outcome.value.record)
    return response


@router.post(
    "/smtp/credentials/{credential_id}/suspend",
    response_model=CredentialOut,
    operation_id="suspend_credential",
    responses=_CHANGE_RESPONSES,
    summary="Suspend (reversible): logins work, MAIL gets 451 4.7.1 so clients queue",
)
async def suspend_credential(
    credential_id: UUID,
    parts: Parts,
    who: Caller,
    corr: Correlation,
    response: Response,
    body: Annotated[SuspendIn | None, Body()] = None,
) -> CredentialOut:
    reason = body.reason if body is not None else None
    outcome = await credential_lifecycle.suspend_credential(parts.uow, who.account_id, credential_id, reason, corr)
    await await_projection(parts, outcome.events, response, unchanged=outcome.value.record)
    return await _body(parts, who, outcome.value)


@router.post(
    "/smtp/credentials/{credential_id}/resume",
    response_model=CredentialOut,
    operation_id="resume_credential",
    responses=_CHANGE_RESPONSES,
    summary="Resume a suspended credential",
)
async def resume_credential(
    credential_id: UUID, parts: Parts, who: Caller, corr: Correlation, response: Response, _: NoParameters = None
) -> CredentialOut:
    outcome = await credential_lifecycle.resume_credential(parts.uow, who.account_id, credential_id, corr)
    await await_projection(parts, outcome.events, response, unchanged=outcome.value.record)
    return await _body(parts, who, outcome.value)


@router.patch(
    "/smtp/credentials/{credential_id}",
    response_model=CredentialOut,
    operation_id="change_credential_restrictions",
    responses=_CHANGE_RESPONSES,
    summary="Set the CIDR allowlist, expiry and sending limits ([] / null clears)",
)
async def change_restrictions(
    credential_id: UUID, body: CredentialPatchIn, parts: Parts, who: Caller, corr: Correlation, response: Response
) -> CredentialOut:
    outcome = await credential_lifecycle.change_restrictions(
        parts.uow, who.account_id, credential_id, restrictions_patch(body), parts.settings.plan_daily_quotas, corr
    )
    await await_projection(parts, outcome.events, response, unchanged=outcome.value.record)
    return await _body(parts, who, outcome.value)


def restrictions_patch(body: CredentialPatchIn) -> RestrictionsPatch:
    """The request's fields as a patch: a field left out keeps its value; `[]`/`null` clears."""
    given = body.model_fields_set
    limits = body.limits
    limits_given = limits.model_fields_set if limits is not None else set()
    clear_limits = "limits" in given and limits is None
    return RestrictionsPatch(
        allowed_cidrs=(body.allowed_cidrs or []) if "allowed_cidrs" in given else None,
        expires_at=body.expires_at,
        clear_expires_at="expires_at" in given and body.expires_at is None,
        messages_per_minute=limits.messages_per_minute if limits is not None else None,
        clear_messages_per_minute=clear_limits
        or ("messages_per_minute" in limits_given and limits is not None and limits.messages_per_minute is None),
        messages_per_day=limits.messages_per_day if limits is not None else None,
        clear_messages_per_day=clear_limits
        or ("messages_per_day" in limits_given and limits is not None and limits.messages_per_day is None),
    )

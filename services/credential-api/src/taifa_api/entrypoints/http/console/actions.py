"""The console's changes (POST forms): each checks the session and the CSRF double submit, validates the form with
the JSON API's own request models, calls the same use case as the JSON API, waits for the projection the same
way, and answers with a redirect to the page (Post/Redirect/Get) or, after create/rotate, the password page."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from taifa_api.adapters import read_models
from taifa_api.application import credential_lifecycle, use_cases
from taifa_api.application.ports import UnitOfWorkFactory
from taifa_api.application.request_context import with_metadata
from taifa_api.domain.errors import InvalidRequest, NotFound
from taifa_api.domain.models import CredentialRecord
from taifa_api.entrypoints.http.auth import Principal
from taifa_api.entrypoints.http.console import rendering, views
from taifa_api.entrypoints.http.console.session import (
    ConsoleRefusal,
    check_csrf,
    clear_session_cookies,
    end_session,
    parts_of,
    signed_in,
)
from taifa_api.entrypoints.http.lifecycle_routes import restrictions_patch
from taifa_api.entrypoints.http.request_context import request_metadata
from taifa_api.entrypoints.http.routes import await_projection, correlation_id
from taifa_api.entrypoints.http.schemas import (
    CredentialPatchIn,
    DomainCreateIn,
    LimitsIn,
    RotateIn,
    SuspendIn,
)

router = APIRouter()
MAX_FORM_FIELDS = 20


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded body (the guard has already capped its size); the last value of a repeated field wins."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS))


async def _change(request: Request) -> tuple[Principal, dict[str, str]]:
    """Every change: a signed-in session, then the CSRF double submit, before anything is read or done."""
    who = await signed_in(request)
    try:
        form = await _form(request)
    except ValueError:  # more fields than any form has
        raise InvalidRequest("form: too many fields") from None
    check_csrf(request, form)
    return who, form


def _uow(request: Request, who: Principal) -> UnitOfWorkFactory:
    """The unit-of-work factory the JSON API's routes use: every event records the session, the client address
    and the request id (the audit trail shows the console's changes as the API's)."""
    return with_metadata(parts_of(request).uow, request_metadata(request.scope, who))


def _done(path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(f"/console{path}?notice={notice}", status_code=303)


async def _settle(
    request: Request, events: list[Any], response: Response, unchanged: CredentialRecord | None = None
) -> Response:
    """The answer once the relay has the change (`routes.await_projection`; `unchanged`: a credential the action
    left as it was, whose newest event is waited for instead)."""
    await await_projection(parts_of(request), events, response, unchanged=unchanged)
    return response


def _confirm(form: dict[str, str], expected: str) -> None:
    if form.get("confirm_name", "").strip().lower() != expected.lower():
        raise ConsoleRefusal(422, "confirmation_mismatch")


# --- domains ---------------------------------------------------------------------------------------------


@router.post("/domains", response_class=Response)
async def register_domain(request: Request) -> Response:
    who, form = await _change(request)
    body = DomainCreateIn(name=form.get("name", "").strip())
    parts = parts_of(request)
    outcome = await use_cases.register_domain(
        _uow(request, who),
        who.account_id,
        body.name,
        correlation_id(request),
        max_domains=parts.settings.api_max_domains_per_account,
    )
    return await _settle(request, outcome.events, _done(f"/domains/{outcome.value.domain_id}", "domain_added"))


@router.post("/domains/{domain_id}/verify", response_class=Response)
async def verify_domain(domain_id: UUID, request: Request) -> Response:
    who, _ = await _change(request)
    parts = parts_of(request)
    outcome = await use_cases.verify_domain(
        _uow(request, who), who.account_id, domain_id, parts.resolver.lookup_txt, correlation_id(request)
    )
    notice = "domain_verified" if outcome.value.status == "verified" else "domain_pending"
    return await _settle(request, outcome.events, _done(f"/domains/{domain_id}", notice))


@router.post("/domains/{domain_id}/release", response_class=Response)
async def release_domain(domain_id: UUID, request: Request) -> Response:
    who, form = await _change(request)
    parts = parts_of(request)
    domain = await read_models.get_domain(parts.pool, who.account_id, domain_id)
    if domain is None:
        raise NotFound()
    _confirm(form, domain["name"])
    outcome = await use_cases.release_domain(
        _uow(request, who), domain_id, who.account_id, "owner", correlation_id(request)
    )
    return await _settle(request, outcome.events, _done("/", "domain_released"))


# --- SMTP credentials ------------------------------------------------------------------------------------


def _password_page(request: Request, *, credential_id: UUID, username: str, password: str, rotated: bool) -> Response:
    smtp = views.smtp_settings(parts_of(request).settings)
    domain = username.partition("@")[2]
    return rendering.render(
        request,
        "password.html",
        title="Your new SMTP password",
        credential_id=credential_id,
        username=username,
        password=password,
        rotated=rotated,
        smtp=smtp,
        snippets=views.snippets(smtp, username, domain),
    )


@router.post("/domains/{domain_id}/credentials", response_class=Response)
async def create_credential(domain_id: UUID, request: Request) -> Response:
    who, _ = await _change(request)
    parts = parts_of(request)
    outcome = await use_cases.create_credential(
        _uow(request, who), who.account_id, domain_id, parts.settings.plan_limits, correlation_id(request)
    )
    created = outcome.value
    page = _password_page(
        request,
        credential_id=created.record.credential_id,
        username=created.record.username,
        password=created.password,
        rotated=False,
    )
    return await _settle(request, outcome.events, page)


@router.post("/credentials/{credential_id}/rotate", response_class=Response)
async def rotate_credential(credential_id: UUID, request: Request) -> Response:
    who, form = await _change(request)
    grace = form.get("grace_period_seconds", "")
    seconds = int(grace) if grace.isascii() and grace.isdigit() else grace  # "²" is a digit to Python, not to int()
    body = RotateIn.model_validate({"grace_period_seconds": seconds})
    outcome = await credential_lifecycle.rotate_credential(
        _uow(request, who), who.account_id, credential_id, body.grace_period_seconds, correlation_id(request)
    )
    rotated = outcome.value
    page = _password_page(
        request, credential_id=credential_id, username=rotated.record.username, password=rotated.password, rotated=True
    )
    return await _settle(request, outcome.events, page)


@router.post("/credentials/{credential_id}/suspend", response_class=Response)
async def suspend_credential(credential_id: UUID, request: Request) -> Response:
    who, form = await _change(request)
    body = SuspendIn(reason=form.get("reason", "").strip() or None)
    outcome = await credential_lifecycle.suspend_credential(
        _uow(request, who), who.account_id, credential_id, body.reason, correlation_id(request)
    )
    return await _settle(
        request, outcome.events, _done(f"/credentials/{credential_id}", "suspended"), outcome.value.record
    )


@router.post("/credentials/{credential_id}/resume", response_class=Response)
async def resume_credential(credential_id: UUID, request: Request) -> Response:
    who, _ = await _change(request)
    outcome = await credential_lifecycle.resume_credential(
        _uow(request, who), who.account_id, credential_id, correlation_id(request)
    )
    return await _settle(
        request, outcome.events, _done(f"/credentials/{credential_id}", "resumed"), outcome.value.record
    )


def _limit(value: str) -> int | str | None:
    value = value.strip()
    return None if not value else int(value) if value.isascii() and value.isdigit() else value


def _expiry(value: str) -> str | None:
    """The form's `YYYY-MM-DDTHH:MM` (labelled UTC) as RFC 3339; empty clears."""
    value = value.strip()
    if not value:
        return None
    return f"{value}:00Z" if len(value) == len("2026-01-01T00:00") else value


@router.post("/credentials/{credential_id}/restrictions", response_class=Response)
async def change_restrictions(credential_id: UUID, request: Request) -> Response:
    who, form = await _change(request)
    cidrs = [line.strip() for line in form.get("allowed_cidrs", "").replace(",", "\n").splitlines() if line.strip()]
    fields: dict[str, Any] = {
        "allowed_cidrs": cidrs,
        "limits": LimitsIn.model_validate(
            {
                "messages_per_minute": _limit(form.get("messages_per_minute", "")),
                "messages_per_day": _limit(form.get("messages_per_day", "")),
            }
        ),
    }
    typed = form.get("expires_at", "").strip()
    if typed != form.get("expires_at_shown", "").strip() or "expires_at_shown" not in form:
        # Changed on the page. Left as shown, the expiry is kept as stored: the page shows it to the minute, and
        # sending that back would move an expiry with seconds (or one already past: then refused) for nothing.
        fields["expires_at"] = _expiry(typed)
    body = CredentialPatchIn.model_validate(fields)
    parts = parts_of(request)
    outcome = await credential_lifecycle.change_restrictions(
        _uow(request, who),
        who.account_id,
        credential_id,
        restrictions_patch(body),
        parts.settings.plan_daily_quotas,
        correlation_id(request),
    )
    return await _settle(
        request, outcome.events, _done(f"/credentials/{credential_id}", "restrictions_saved"), outcome.value.record
    )


@router.post("/credentials/{credential_id}/secrets/{secret_id}/revoke", response_class=Response)
async def end_grace(credential_id: UUID, secret_id: UUID, request: Request) -> Response:
    who, _ = await _change(request)
    outcome = await credential_lifecycle.revoke_secret(
        _uow(request, who), who.account_id, credential_id, secret_id, correlation_id(request)
    )
    return await _settle(
        request, outcome.events, _done(f"/credentials/{credential_id}", "secret_ended"), outcome.value.record
    )


@router.post("/credentials/{credential_id}/deactivate", response_class=Response)
async def deactivate_credential(credential_id: UUID, request: Request) -> Response:
    who, form = await _change(request)
    parts = parts_of(request)
    row = await read_models.get_credential(parts.pool, who.account_id, credential_id)
    if row is None:
        raise NotFound()
    _confirm(form, row["domain"])
    outcome = await use_cases.deactivate_credential(
        _uow(request, who), who.account_id, credential_id, correlation_id(request)
    )
    return await _settle(request, outcome.events, _done(f"/credentials/{credential_id}", "deactivated"), outcome.value)


@router.post("/sign-out", response_class=Response)
async def sign_out(request: Request) -> Response:
    await _change(request)
    await end_session(request)
    response = rendering.render(
        request, "signin.html", title="Signed out", signed_in=False, notice=None, signed_out=True
    )
    clear_session_cookies(response)
    return response

"""Console scripts: `taifa-api` (serve, migrate) and the operator CLI `taifa-admin` (docs/api.md, JSON output)."""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar
from uuid import UUID, uuid4

import typer
from pydantic import ValidationError
from taifa_events import Actor, EventMetadata
from taifa_events.signing import InvalidKeyring

from taifa_api import bootstrap
from taifa_api.application import credential_lifecycle, use_cases
from taifa_api.application.request_context import with_metadata
from taifa_api.bootstrap import Container
from taifa_api.domain.errors import CommandRefused
from taifa_api.domain.lifecycle import DEFAULT_GRACE_SECONDS
from taifa_api.domain.models import CredentialState
from taifa_api.domain.plans import PLANS
from taifa_api.entrypoints.http import access_log
from taifa_api.entrypoints.webhook_cli import webhook_cli
from taifa_api.settings import Settings

T = TypeVar("T")

api_app = typer.Typer(help="Taifa Mail credential API.", no_args_is_help=True, add_completion=False)
admin_app = typer.Typer(help="Taifa Mail operator CLI (prints JSON).", no_args_is_help=True, add_completion=False)
account_cli = typer.Typer(help="Accounts.", no_args_is_help=True)
apikey_cli = typer.Typer(help="API keys.", no_args_is_help=True)
domain_cli = typer.Typer(help="Domains.", no_args_is_help=True)
admin_app.add_typer(account_cli, name="account")
admin_app.add_typer(apikey_cli, name="apikey")
admin_app.add_typer(domain_cli, name="domain")
session_cli = typer.Typer(help="Session JWTs (the `taifa_session` cookie).", no_args_is_help=True)
admin_app.add_typer(session_cli, name="session")
credential_cli = typer.Typer(help="SMTP credentials of any account (operators).", no_args_is_help=True)
admin_app.add_typer(credential_cli, name="credential")
admin_app.add_typer(webhook_cli, name="webhook")


@api_app.command()
def serve() -> None:
    """Run the HTTP API (and the outbox publisher) with uvicorn on TAIFA_API_HOST:TAIFA_API_PORT."""
    import uvicorn

    from taifa_api.entrypoints.http.app import create_app
    from taifa_api.entrypoints.http.auth import InvalidKeyConfiguration

    try:
        settings = Settings()
    except ValidationError as exc:  # one line per wrong setting, naming the setting, never its value
        reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        typer.echo(f"taifa-api: refusing to start: {reasons}", err=True)
        raise typer.Exit(2) from None
    if settings.api_publisher_enabled:
        try:
            settings.event_keyring()
        except InvalidKeyring as exc:
            typer.echo(f"taifa-api: refusing to start: {exc}", err=True)
            raise typer.Exit(2) from None
    bootstrap.configure_logging(settings)
    access_log.redact_tokens()
    try:
        app = create_app(settings)
    except InvalidKeyConfiguration as exc:
        typer.echo(f"taifa-api: refusing to start: {exc}", err=True)
        raise typer.Exit(2) from None
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.api_log_level.lower(),
        log_config=None,  # uvicorn's own lines (start-up, access log) go through the JSON handler configured above
        proxy_headers=False,
        server_header=False,
    )


@api_app.command("migrate")
def migrate_command() -> None:
    """Apply the database migrations (Alembic, version table alembic_version_api)."""
    version_table = bootstrap.migrate_schema(Settings())
    typer.echo(json.dumps({"migrated": True, "version_table": version_table}))


def _run(use_case: Callable[[Container], Awaitable[T]], settings: Settings | None = None) -> T:
    """Run one use case on the command side's parts (bootstrap.command_side), closed before exit."""

    async def main() -> T:
        async with bootstrap.command_side(settings or Settings()) as parts:
            operator = with_metadata(parts.uow, EventMetadata(actor=Actor(type="operator", id=_operator())))
            return await use_case(dataclasses.replace(parts, uow=operator))

    try:
        return asyncio.run(main())
    except CommandRefused as refusal:
        typer.echo(json.dumps({"error": {"code": refusal.code, "message": refusal.detail}}), err=True)
        sys.exit(1)


def _operator() -> str:
    """The audit actor id of a `taifa-admin` command: the OS user running it, else "taifa-admin"."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError, ImportError):
        return "taifa-admin"
    return user if user and len(user) <= 200 and user.isprintable() else "taifa-admin"


def _correlation() -> str:
    return f"taifa-admin:{uuid4()}"


@account_cli.command("create")
def account_create(
    name: Annotated[str, typer.Option("--name", help="Account name.")],
    plan: Annotated[str, typer.Option("--plan", help=f"One of {', '.join(PLANS)}.")],
) -> None:
    """Create an account and its first API key."""
    wrong = f"plan must be one of {PLANS}" if plan not in PLANS else None
    if not name.strip() or len(name) > 200:
        wrong = "name must be 1-200 characters, not only spaces"
    if wrong is not None:
        typer.echo(json.dumps({"error": {"code": "validation_error", "message": wrong}}), err=True)
        raise typer.Exit(2)
    outcome = _run(lambda parts: use_cases.create_account(parts.uow, name.strip(), plan, _correlation()))
    issued = outcome.value
    typer.echo(
        json.dumps({"account_id": str(issued.account_id), "key_id": str(issued.key_id), "api_key": issued.api_key})
    )


@apikey_cli.command("create")
def apikey_create(account: Annotated[UUID, typer.Option("--account", help="Account id.")]) -> None:
    """Issue another API key for an account."""
    issued = _run(lambda parts: use_cases.issue_api_key(parts.uow, account, _correlation())).value
    typer.echo(json.dumps({"key_id": str(issued.key_id), "api_key": issued.api_key}))


@apikey_cli.command("revoke")
def apikey_revoke(key_id: Annotated[UUID, typer.Option("--key-id", help="Key id.")]) -> None:
    """Revoke an API key: it gets 401 from then on."""
    outcome = _run(lambda parts: use_cases.revoke_api_key(parts.uow, key_id, _correlation()))
    typer.echo(json.dumps({"key_id": str(key_id), "revoked": True, "changed": bool(outcome.events)}))


@domain_cli.command("verify")
def domain_verify(
    domain_id: Annotated[UUID, typer.Argument(help="Domain id.")],
    force: Annotated[bool, typer.Option("--force", help="Mark verified without DNS (operators only).")] = False,
) -> None:
    """Mark a domain verified without DNS (`--force` is required).

    Exits 1 with a JSON error when refused: unknown id (`not_found`), the name verified by another account
    (`domain_taken`), or a released domain (`domain_released`).
    """
    if not force:
        typer.echo(json.dumps({"error": {"code": "validation_error", "message": "--force is required"}}), err=True)
        raise typer.Exit(2)
    domain = _run(lambda parts: use_cases.force_verify_domain(parts.uow, domain_id, _correlation())).value
    typer.echo(
        json.dumps(
            {
                "domain_id": str(domain.domain_id),
                "name": domain.name,
                "status": domain.status,
                "status_reason": domain.status_reason,
            }
        )
    )


@domain_cli.command("release")
def domain_release(domain_id: Annotated[UUID, typer.Argument(help="Domain id.")]) -> None:
    """Release a domain as an operator: its credentials are deactivated and another account may verify the name."""
    outcome = _run(lambda parts: use_cases.release_domain(parts.uow, domain_id, None, "operator", _correlation()))
    typer.echo(json.dumps({"domain_id": str(domain_id), "released": True, "events": len(outcome.events)}))


@domain_cli.command("recheck")
def domain_recheck() -> None:
    """Look verified domains' TXT records up again (those not checked within TAIFA_API_DOMAIN_RECHECK_INTERVAL_SECONDS);
    release the ones missing for TAIFA_API_DOMAIN_RECHECK_GRACE_SECONDS. Run hourly by the `taifa-domain-recheck`
    CronJob."""
    from datetime import timedelta

    from taifa_api.application import recheck

    settings = Settings()
    report = _run(
        lambda parts: recheck.recheck_domains(
            parts.uow,
            parts.resolver.lookup_txt,
            interval=timedelta(seconds=settings.api_domain_recheck_interval_seconds),
            grace=timedelta(seconds=settings.api_domain_recheck_grace_seconds),
        ),
        settings,
    )
    typer.echo(
        json.dumps(
            {
                "checked": report.checked,
                "confirmed": report.confirmed,
                "missing": report.missing,
                "released": [str(domain_id) for domain_id in report.released],
            }
        )
    )


@session_cli.command("revoke")
def session_revoke(
    jti: Annotated[str, typer.Option("--jti", help="The `jti` claim of the session JWT to refuse from now on.")],
    expires_at: Annotated[
        str | None,
        typer.Option(
            "--expires-at",
            help="The token's `exp` (ISO 8601, UTC if no offset): the revocation may be deleted after it. "
            "Without it the revocation is kept for good.",
        ),
    ] = None,
) -> None:
    """Revoke one session JWT by its `jti`: the API answers 401 to it from the next request on."""
    from datetime import datetime

    from taifa_api.application import sessions

    try:
        expiry = datetime.fromisoformat(expires_at) if expires_at is not None else None
    except ValueError:
        typer.echo(
            json.dumps({"error": {"code": "validation_error", "message": "--expires-at: not ISO 8601"}}), err=True
        )
        raise typer.Exit(2) from None
    settings = Settings()
    try:
        changed = _run(
            lambda parts: sessions.revoke_session(parts.uow, jti, expiry, settings.api_jwt_leeway_seconds), settings
        )
    except sessions.InvalidJti as exc:
        typer.echo(json.dumps({"error": {"code": "validation_error", "message": str(exc)}}), err=True)
        raise typer.Exit(2) from None
    typer.echo(
        json.dumps(
            {"jti": jti, "revoked": True, "changed": changed, "expires_at": expiry.isoformat() if expiry else None}
        )
    )


def _signing_settings() -> Settings:
    settings = Settings()
    if settings.api_jwt_secret is None:
        typer.echo(
            json.dumps({"error": {"code": "validation_error", "message": "TAIFA_API_JWT_SECRET is not set"}}), err=True
        )
        raise typer.Exit(2)
    return settings


@session_cli.command("create")
def session_create(account: Annotated[UUID, typer.Option("--account", help="Account id.")]) -> None:
    """Print a `taifa_session` cookie value for the account: a JWT signed with TAIFA_API_JWT_SECRET (HS256), as
    long-lived as TAIFA_API_JWT_MAX_LIFETIME_SECONDS allows, with a `jti` for `session revoke`. Send it with a
    matching CSRF pair on writes (cookie `taifa_csrf` = header `X-CSRF-Token`)."""
    from datetime import UTC, datetime

    from taifa_api.entrypoints import session_tokens

    minted = session_tokens.mint_session(_signing_settings(), account)
    expires = datetime.fromtimestamp(minted.expires_at, UTC).isoformat()
    typer.echo(json.dumps({"cookie": "taifa_session", "value": minted.token, "jti": minted.jti, "expires_at": expires}))


@session_cli.command("sign-in-link")
def session_sign_in_link(
    account: Annotated[UUID, typer.Option("--account", help="Account id.")],
    ttl_seconds: Annotated[int, typer.Option("--ttl-seconds", min=60, max=7 * 86400, help="Valid for.")] = 8 * 3600,
) -> None:
    """Print a one-time console sign-in path for the account (`/console/dev/sign-in?token=...`), served only while
    TAIFA_API_DEV_SIGN_IN is on (`make dev`). Prefix it with the API's URL; it works once."""
    from datetime import UTC, datetime

    from taifa_api.entrypoints import session_tokens

    minted = session_tokens.mint_sign_in_token(_signing_settings(), account, ttl_seconds)
    expires = datetime.fromtimestamp(minted.expires_at, UTC).isoformat()
    typer.echo(json.dumps({"path": f"/console/dev/sign-in?token={minted.token}", "expires_at": expires}))


def _credential_json(state: CredentialState) -> dict[str, object]:
    record = state.record
    return {
        "credential_id": str(record.credential_id),
        "account_id": str(record.account_id),
        "username": record.username,
        "status": record.status,
        "suspended_at": record.suspended_at.isoformat() if record.suspended_at else None,
        "suspension_reason": record.suspension_reason,
        "secrets": [
            {"id": str(s.secret_id), "expires_at": s.expires_at.isoformat() if s.expires_at else None}
            for s in state.secrets
        ],
    }


@credential_cli.command("suspend")
def credential_suspend(
    credential_id: Annotated[UUID, typer.Argument(help="Credential id.")],
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (at most 200 characters), shown to the account.")
    ] = None,
) -> None:
    """Suspend a credential: logins still work, MAIL gets 451 4.7.1 until resumed. Exits 1 when refused
    (`not_found`, `credential_inactive`, `validation_error`)."""
    outcome = _run(
        lambda parts: credential_lifecycle.suspend_credential(parts.uow, None, credential_id, reason, _correlation())
    )
    typer.echo(json.dumps({**_credential_json(outcome.value), "changed": bool(outcome.events)}))


@credential_cli.command("resume")
def credential_resume(credential_id: Annotated[UUID, typer.Argument(help="Credential id.")]) -> None:
    """Resume a suspended credential (an active one: unchanged)."""
    outcome = _run(lambda parts: credential_lifecycle.resume_credential(parts.uow, None, credential_id, _correlation()))
    typer.echo(json.dumps({**_credential_json(outcome.value), "changed": bool(outcome.events)}))


@credential_cli.command("rotate")
def credential_rotate(
    credential_id: Annotated[UUID, typer.Argument(help="Credential id.")],
    grace_period_seconds: Annotated[
        int,
        typer.Option("--grace-period-seconds", help="How long the previous password keeps working (0..604800)."),
    ] = DEFAULT_GRACE_SECONDS,
) -> None:
    """Give a credential a new password (printed once, in `password`); the previous one works for the grace
    period. Exits 1 when refused (`rotation_in_progress`, `credential_inactive`, `not_found`, `validation_error`)."""
    outcome = _run(
        lambda parts: credential_lifecycle.rotate_credential(
            parts.uow, None, credential_id, grace_period_seconds, _correlation()
        )
    )
    rotated = outcome.value
    previous_expiry = rotated.previous.expires_at
    typer.echo(
        json.dumps(
            {
                **_credential_json(CredentialState(rotated.record, rotated.secrets)),
                "password": rotated.password,
                "previous_secret": {
                    "id": str(rotated.previous.secret_id),
                    "expires_at": previous_expiry.isoformat() if previous_expiry else None,
                },
            }
        )
    )

"""`taifa-admin webhook ...`: operators' webhook commands (docs/api.md, "Webhooks"; JSON output like the rest).

- `enable --id ID`: a disabled endpoint (deliveries failed for about 3 days) receives new events again.
- `reencrypt`: after putting a new key first in TAIFA_WEBHOOK_SECRET_KEYS, seal every stored signing secret with
  it, so the old key can then be removed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated
from uuid import UUID

import typer

from taifa_api import bootstrap
from taifa_api.adapters import webhook_endpoints
from taifa_api.adapters.webhook_secrets import WebhookKeyError
from taifa_api.application import webhooks
from taifa_api.domain.errors import CommandRefused
from taifa_api.domain.webhooks import WebhookEndpoint
from taifa_api.settings import Settings

webhook_cli = typer.Typer(help="Webhook endpoints of any account (operators).", no_args_is_help=True)


def _fail(code: str, message: str) -> None:
    typer.echo(json.dumps({"error": {"code": code, "message": message}}), err=True)
    sys.exit(1)


@webhook_cli.command("enable")
def webhook_enable(webhook_id: Annotated[UUID, typer.Option("--id", help="Webhook endpoint id.")]) -> None:
    """Enable a disabled endpoint again (an enabled one: unchanged). Deliveries that failed stay failed; events
    from now on are delivered. Exits 1 with `not_found` for an unknown id."""

    async def main() -> tuple[WebhookEndpoint, bool]:
        async with bootstrap.command_side(Settings()) as parts:
            return await webhooks.enable_webhook(parts.uow, webhook_id)

    try:
        endpoint, changed = asyncio.run(main())
    except CommandRefused as refusal:
        _fail(refusal.code, refusal.detail)
        return
    typer.echo(json.dumps({"webhook_id": str(endpoint.webhook_id), "status": endpoint.status, "changed": changed}))


@webhook_cli.command("reencrypt")
def webhook_reencrypt() -> None:
    """Seal every stored signing secret with the first key of TAIFA_WEBHOOK_SECRET_KEYS (the ones already sealed
    with it are left alone); prints how many endpoints changed. Exits 1 when the keys are unset or a secret was
    sealed with a key that is no longer listed."""
    settings = Settings()

    async def main() -> tuple[int, str]:
        async with bootstrap.command_side(settings) as parts:
            if parts.webhook_secrets is None:
                raise WebhookKeyError("TAIFA_WEBHOOK_SECRET_KEYS is not set")
            changed = await webhook_endpoints.reencrypt_secrets(parts.pool, parts.webhook_secrets)
            return changed, parts.webhook_secrets.primary_key_id

    try:
        changed, key_id = asyncio.run(main())
    except WebhookKeyError as exc:
        _fail("webhook_keys", str(exc))
        return
    typer.echo(json.dumps({"reencrypted": changed, "key_id": key_id}))

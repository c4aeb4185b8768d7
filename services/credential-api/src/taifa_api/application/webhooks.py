"""Use cases of the owner's webhook endpoints: create, rotate the signing secret, delete, and (operators) enable
again. Each stores the endpoint and appends its event (`WebhookEndpointCreated`, `WebhookSecretRotated`,
`WebhookEndpointDeleted`) in one transaction, so the audit feed shows exactly what happened.

The signing secret is generated here through the `SecretIssuer` port, returned once to the caller, and stored
only sealed (AES-GCM, adapters/webhook_secrets.py); no event, log or list carries it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol
from uuid import UUID, uuid4

from taifa_api.application.ports import Clock, UnitOfWorkFactory
from taifa_api.application.use_cases import Outcome, utc_now
from taifa_api.domain import webhooks
from taifa_api.domain.errors import InvalidRequest, NotFound
from taifa_api.domain.webhook_urls import InvalidWebhookUrl, WebhookUrl, parse_webhook_url
from taifa_api.domain.webhooks import WebhookEndpoint


class SecretIssuer(Protocol):
    """New signing secrets and their stored (sealed) form: adapters/webhook_secrets.WebhookSecretBox."""

    def new_secret(self) -> str: ...

    def encrypt(self, secret: str, webhook_id: UUID) -> bytes: ...


HostCheck = Callable[[WebhookUrl], Awaitable[str | None]]
"""Resolve the URL's host and judge every address: None when it may be called, else why not (a sentence)."""


@dataclass(frozen=True)
class IssuedWebhook:
    """An endpoint with its signing secret in clear: returned once (the 201 of create or rotate-secret)."""

    endpoint: WebhookEndpoint
    secret: str

    def __repr__(self) -> str:  # the dataclass repr would show the secret
        return f"IssuedWebhook(endpoint={self.endpoint!r})"


async def checked_url(raw: str, *, allow_http: bool, check_host: HostCheck) -> str:
    """The normalised URL if the rules and every resolved address allow it, else InvalidRequest (422) saying why."""
    try:
        url = parse_webhook_url(raw, allow_http=allow_http)
    except InvalidWebhookUrl as exc:
        raise InvalidRequest(f"url: {exc}") from None
    refusal = await check_host(url)
    if refusal is not None:
        raise InvalidRequest(f"url: {refusal}")
    return url.url


async def create_webhook(
    uow: UnitOfWorkFactory,
    account_id: UUID,
    raw_url: str,
    events: Sequence[str],
    issuer: SecretIssuer,
    correlation_id: str,
    *,
    allow_http: bool,
    check_host: HostCheck,
    max_endpoints: int = webhooks.DEFAULT_MAX_ENDPOINTS,
    clock: Clock = utc_now,
) -> Outcome[IssuedWebhook]:
    """A new enabled endpoint with a new secret. The URL is checked (DNS included) before the transaction; the
    per-account cap under the account's row lock, so concurrent creations cannot pass it."""
    subscribed = webhooks.subscribed_events(events)
    url = await checked_url(raw_url, allow_http=allow_http, check_host=check_host)
    webhook_id = uuid4()
    secret = issuer.new_secret()
    sealed = issuer.encrypt(secret, webhook_id)
    async with uow() as work:
        if await work.accounts.lock_plan(account_id) is None:
            raise NotFound()
        webhooks.check_may_add(await work.webhooks.count(account_id), max_endpoints)
        endpoint, event = webhooks.create(webhook_id, account_id, url, subscribed, clock())
        await work.webhooks.add(endpoint, sealed)
        appended = await work.append([event], correlation_id=correlation_id)
        await work.commit()
    return Outcome(IssuedWebhook(endpoint, secret), appended)


async def rotate_webhook_secret(
    uow: UnitOfWorkFactory,
    account_id: UUID,
    webhook_id: UUID,
    issuer: SecretIssuer,
    correlation_id: str,
    *,
    clock: Clock = utc_now,
) -> Outcome[IssuedWebhook]:
    """A new secret; the one it replaces keeps signing for 24 h (an older previous secret ends at once)."""
    secret = issuer.new_secret()
    sealed = issuer.encrypt(secret, webhook_id)
    async with uow() as work:
        endpoint = await work.webhooks.lock(webhook_id, account_id)
        if endpoint is None:
            raise NotFound()
        rotated, event = webhooks.rotate(endpoint, clock())
        await work.webhooks.rotate_secret(rotated, sealed)
        appended = await work.append([event], correlation_id=correlation_id)
        await work.commit()
    return Outcome(IssuedWebhook(rotated, secret), appended)


async def delete_webhook(
    uow: UnitOfWorkFactory, account_id: UUID, webhook_id: UUID, correlation_id: str
) -> Outcome[WebhookEndpoint]:
    """Remove the endpoint, its deliveries and attempts; no further delivery is attempted."""
    async with uow() as work:
        endpoint = await work.webhooks.lock(webhook_id, account_id)
        if endpoint is None:
            raise NotFound()
        await work.webhooks.delete(webhook_id)
        appended = await work.append([webhooks.delete(endpoint)], correlation_id=correlation_id)
        await work.commit()
    return Outcome(endpoint, appended)


async def enable_webhook(uow: UnitOfWorkFactory, webhook_id: UUID) -> tuple[WebhookEndpoint, bool]:
    """Operators (`taifa-admin webhook enable`): a disabled endpoint receives deliveries again (new events only;
    the deliveries that failed stay failed); the endpoint and whether it changed (an enabled one does not). No
    event: there is no `webhook.enabled` audit type; the operator's command output is the record."""
    async with uow() as work:
        endpoint = await work.webhooks.lock(webhook_id, None)
        if endpoint is None:
            raise NotFound()
        if endpoint.status == webhooks.ENABLED:
            return endpoint, False
        enabled = replace(endpoint, status=webhooks.ENABLED, disabled_at=None, disabled_reason=None)
        await work.webhooks.save_status(enabled)
        await work.commit()
    return enabled, True

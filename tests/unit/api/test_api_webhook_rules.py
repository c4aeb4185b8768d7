"""Webhook endpoint rules (taifa_api.domain.webhooks) and the use cases' URL check, pure."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from taifa_api.application.webhooks import IssuedWebhook, checked_url
from taifa_api.domain import webhooks
from taifa_api.domain.errors import InvalidRequest
from taifa_api.domain.webhook_urls import WebhookUrl
from taifa_events.audit import AUDIT_TYPES

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def test_events_are_known_types_or_star_alone() -> None:
    assert webhooks.subscribed_events(["*"]) == ("*",)
    assert webhooks.subscribed_events(list(AUDIT_TYPES)) == AUDIT_TYPES
    assert webhooks.subscribed_events(["domain.created", "webhook.disabled", "domain.created"]) == (
        "domain.created",
        "webhook.disabled",
    )
    for bad, where in [([], "events:"), (["nope"], "events[0]"), (["domain.created", "x"], "events[1]")]:
        with pytest.raises(InvalidRequest, match=where.replace("[", r"\[").replace("]", r"\]")):
            webhooks.subscribed_events(bad)
    with pytest.raises(InvalidRequest, match="cannot be combined"):
        webhooks.subscribed_events(["*", "domain.created"])
    assert {"smtp_credential.deactivated", "domain.verified", "webhook.disabled"} <= set(AUDIT_TYPES)


def test_the_cap_counts_existing_endpoints() -> None:
    webhooks.check_may_add(9, 10)
    with pytest.raises(webhooks.WebhookLimitReached):
        webhooks.check_may_add(10, 10)


def test_create_rotate_delete_events_carry_no_secret() -> None:
    account, webhook_id = uuid.uuid4(), uuid.uuid4()
    endpoint, created = webhooks.create(webhook_id, account, "https://h.example/x", ("*",), NOW)
    assert endpoint.status == "enabled" and created.events == ["*"] and created.url == "https://h.example/x"
    rotated, event = webhooks.rotate(endpoint, NOW)
    assert rotated.previous_secret_expires_at == NOW + timedelta(hours=24)
    assert webhooks.previous_secret_valid(rotated, NOW + timedelta(hours=23))
    assert not webhooks.previous_secret_valid(rotated, NOW + timedelta(hours=24))
    assert (event.webhook_id, event.account_id) == (webhook_id, account)
    assert webhooks.delete(rotated).stream_id() == webhook_id
    for data in (created, event, webhooks.delete(rotated)):
        assert "secret" not in data.model_dump()


def test_issued_webhook_repr_hides_the_secret() -> None:
    endpoint, _ = webhooks.create(uuid.uuid4(), uuid.uuid4(), "https://h.example/", ("*",), NOW)
    assert "whsec_" not in repr(IssuedWebhook(endpoint, "whsec_secret"))


async def test_checked_url_normalises_and_says_why_it_refuses() -> None:
    async def allow(_: WebhookUrl) -> str | None:
        return None

    async def private(_: WebhookUrl) -> str | None:
        return "the URL resolves to a private address"

    assert await checked_url("HTTPS://H.Example", allow_http=False, check_host=allow) == "https://h.example/"
    with pytest.raises(InvalidRequest, match=r"^url: the URL resolves to a private address$"):
        await checked_url("https://h.example/", allow_http=False, check_host=private)
    with pytest.raises(InvalidRequest, match=r"^url: the URL must use https$"):
        await checked_url("http://h.example/", allow_http=False, check_host=allow)

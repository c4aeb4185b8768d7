"""The pure rules of webhook delivery (issue 17): retry schedule and jitter, message ids, subscriptions, what counts
as delivered, the Standard Webhooks headers (checked with the `standardwebhooks` package) and which endpoint
takes which event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError
from taifa_api.adapters.webhook_secrets import new_webhook_secret
from taifa_api.adapters.webhook_signing import StandardWebhooksSigner
from taifa_api.application.webhook_dispatch import body_of, deliveries_for
from taifa_api.application.webhook_ports import FeedEvent, Subscription
from taifa_api.domain import webhook_delivery as rules

SECRET, OTHER = new_webhook_secret(), new_webhook_secret()  # made per run, never stored


def test_the_schedule_lasts_about_three_days_and_starts_with_seconds() -> None:
    span = rules.schedule_span()
    assert timedelta(days=2.5) < span < timedelta(days=3.5)
    assert rules.RETRY_SCHEDULE[0] == timedelta(seconds=5) and rules.RETRY_SCHEDULE[1] == timedelta(minutes=5)
    assert list(rules.RETRY_SCHEDULE) == sorted(rules.RETRY_SCHEDULE)


def test_retry_delay_jitters_within_a_fifth_and_ends_with_the_schedule() -> None:
    for attempt, base in enumerate(rules.RETRY_SCHEDULE, start=1):
        assert rules.retry_delay(attempt, 0.5) == base
        assert rules.retry_delay(attempt, 0.0) == base * 0.8
        assert rules.retry_delay(attempt, 0.999999) == pytest.approx(base * 1.2, rel=1e-5)
    assert rules.retry_delay(len(rules.RETRY_SCHEDULE) + 1, 0.5) is None
    assert rules.retry_delay(1, 0.5, scale=0.001) == timedelta(milliseconds=5)
    with pytest.raises(ValueError, match="after a failed attempt"):
        rules.retry_delay(0, 0.5)


def test_message_id_is_stable_per_endpoint_and_event() -> None:
    webhook, event = uuid.uuid4(), uuid.uuid4()
    assert rules.message_id(webhook, event) == rules.message_id(webhook, event)
    assert rules.message_id(webhook, event).startswith("msg_") and len(rules.message_id(webhook, event)) == 36
    assert rules.message_id(webhook, event) != rules.message_id(uuid.uuid4(), event)
    assert rules.delivery_id(webhook, event) == rules.delivery_id(webhook, event)


def test_only_2xx_is_delivered_and_bodies_are_cut() -> None:
    assert [rules.delivered(c) for c in (200, 204, 299)] == [True] * 3
    assert [rules.delivered(c) for c in (None, 199, 301, 302, 400, 500, 503)] == [False] * 7
    assert rules.excerpt(b"x" * 5000) == "x" * rules.EXCERPT_CHARS and rules.excerpt(b"") is None
    assert rules.short_error("line one\nline   two") == "line one line two"
    # PostgreSQL's text cannot hold NUL: a body or error with one would never be recorded (and sent again forever).
    assert rules.excerpt(b'{"a":1}\x00tail') == '{"a":1}\ufffdtail' and "\x00" not in rules.short_error("a\x00b")


def test_subscriptions_name_types_or_everything() -> None:
    assert rules.subscribed(["*"], "domain.created")
    assert rules.subscribed(["smtp_credential.deactivated"], "smtp_credential.deactivated")
    assert not rules.subscribed(["smtp_credential.deactivated"], "smtp_credential.created")


def test_signature_headers_verify_with_standardwebhooks_for_each_secret() -> None:
    body = body_of({"type": "domain.created", "timestamp": "2026-11-28T08:00:00Z", "data": {"id": "x"}})
    headers = StandardWebhooksSigner().headers("msg_1", datetime.now(UTC), body, [SECRET, OTHER])
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"].isdigit()
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET, OTHER):
        assert Webhook(secret).verify(body, headers)["type"] == "domain.created"
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"x", b"y"), headers)
    one = StandardWebhooksSigner().headers("msg_1", datetime.now(UTC), body, [OTHER])
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, one)


def test_an_endpoint_takes_only_its_accounts_subscribed_events_after_its_creation() -> None:
    now = datetime.now(UTC)
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    everything = Subscription(uuid.uuid4(), mine, ("*",), now - timedelta(hours=1))
    deactivations = Subscription(uuid.uuid4(), mine, ("smtp_credential.deactivated",), now - timedelta(hours=1))
    too_new = Subscription(uuid.uuid4(), mine, ("*",), now + timedelta(seconds=1))

    def event(account: uuid.UUID, kind: str) -> FeedEvent:
        return FeedEvent(uuid.uuid4(), account, kind, now, {"type": kind})

    events = [
        event(mine, "smtp_credential.deactivated"),
        event(mine, "domain.created"),
        event(theirs, "domain.created"),
    ]
    planned = deliveries_for(events, [everything, deactivations, too_new])
    assert sorted((d.webhook_id, d.event_id) for d in planned) == sorted(
        [(everything.webhook_id, events[0].event_id), (deactivations.webhook_id, events[0].event_id),
         (everything.webhook_id, events[1].event_id)]
    )  # fmt: skip
    assert all(d.message_id == rules.message_id(d.webhook_id, d.event_id) for d in planned)

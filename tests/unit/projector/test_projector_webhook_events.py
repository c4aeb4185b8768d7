"""Issue 17: the projector decodes the webhook events and its fold ignores them (only the audit feed records them)."""

from __future__ import annotations

import uuid

import taifa_events as ev
from taifa_projector.domain.fold import ReadSideFold

from tests.unit.projector.projector_events import Domain


def _webhook_events(account_id: uuid.UUID, first_position: int) -> list[ev.Envelope]:
    webhook_id = uuid.uuid4()
    datas: list[ev.EventData] = [
        ev.WebhookEndpointCreated(account_id=account_id, webhook_id=webhook_id, url="https://h.example/", events=["*"]),
        ev.WebhookSecretRotated(account_id=account_id, webhook_id=webhook_id),
        ev.WebhookEndpointDisabled(account_id=account_id, webhook_id=webhook_id, reason="failing"),
        ev.WebhookEndpointDeleted(account_id=account_id, webhook_id=webhook_id),
    ]
    return [
        ev.decode(ev.encode(ev.make_envelope(d, stream_version=i + 1, position=first_position + i, correlation_id="r")))
        for i, d in enumerate(datas)
    ]


def test_webhook_events_change_nothing_in_the_fold() -> None:
    d = Domain()
    base = [d.created(1)]
    plain = ReadSideFold()
    plain.apply_all(base)
    mixed = ReadSideFold()
    mixed.apply_all([*base, *_webhook_events(d.account_id, 2)])
    assert (mixed.credentials, mixed.domains, mixed.auth, mixed.parked, mixed.plans) == (
        plain.credentials, plain.domains, plain.auth, plain.parked, plain.plans,
    )  # fmt: skip
    assert not mixed.newly_parked and mixed.changed_auth == plain.changed_auth

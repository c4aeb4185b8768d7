"""libs/events, issue 17: envelope metadata, webhook events, the audit feed's records (allow-listed data)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
import taifa_events as ev
from taifa_events import audit, topics
from taifa_events.audit import AUDIT_TYPES, Actor, AuditEvent, EventMetadata, audit_event, audit_event_from_quota
from taifa_events.usage import QuotaReached

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
ACCOUNT, DOMAIN, CREDENTIAL, WEBHOOK = (uuid.uuid4() for _ in range(4))
META = EventMetadata(actor=Actor(type="api_key", id=str(uuid.uuid4())), source_ip="203.0.113.9", request_id="req-7")
PASSWORD = "tmsmtp_" + "x" * 49
HASH = ev.hash_secret(PASSWORD)
NAMES = {"credential_id": CREDENTIAL, "account_id": ACCOUNT, "domain_id": DOMAIN, "username": "abcd1234@example.com"}


def _envelope(data: ev.EventData, metadata: EventMetadata | None = META, position: int = 3) -> ev.Envelope:
    return ev.make_envelope(data, stream_version=1, position=position, correlation_id="req-7", metadata=metadata)


def _every_feed_event() -> list[ev.EventData]:
    return [
        ev.CredentialCreated(**NAMES, domain="example.com", secret_hash=HASH, created_at=NOW),
        ev.CredentialSecretRotated(
            **NAMES, secret_id=uuid.uuid4(), secret_hash=HASH, previous_secret_id=uuid.uuid4(),
            previous_secret_expires_at=NOW, rotated_at=NOW,
        ),
        ev.CredentialSecretRevoked(**NAMES, secret_id=uuid.uuid4(), revoked_at=NOW),
        ev.CredentialSuspended(**NAMES, reason="abuse report", suspended_at=NOW),
        ev.CredentialResumed(**NAMES, resumed_at=NOW),
        ev.CredentialRestrictionsChanged(
            **NAMES, allowed_cidrs=["203.0.113.0/24"], expires_at=NOW, limits={"messages_per_minute": 5},
            changed_at=NOW,
        ),
        ev.CredentialDeactivated(**NAMES, deactivated_at=NOW),
        ev.DomainRegistered(
            domain_id=DOMAIN, account_id=ACCOUNT, name="example.com", verification_name="_taifa.example.com",
            verification_value="taifa-verification=token-not-for-the-feed", created_at=NOW,
        ),
        ev.DomainVerified(domain_id=DOMAIN, account_id=ACCOUNT, name="example.com", verified_at=NOW),
        ev.DomainReleased(
            domain_id=DOMAIN, account_id=ACCOUNT, name="example.com", released_at=NOW, reason="verification_lost"
        ),
        ev.WebhookEndpointCreated(
            account_id=ACCOUNT, webhook_id=WEBHOOK, url="https://hooks.example.com/x", events=["*"]
        ),
        ev.WebhookSecretRotated(account_id=ACCOUNT, webhook_id=WEBHOOK),
        ev.WebhookEndpointDeleted(account_id=ACCOUNT, webhook_id=WEBHOOK),
        ev.WebhookEndpointDisabled(account_id=ACCOUNT, webhook_id=WEBHOOK, reason="failing for 3 days"),
    ]  # fmt: skip


def _quota() -> QuotaReached:
    return QuotaReached(
        account_id=ACCOUNT, credential_id=CREDENTIAL, day="20261128", percent=80, count=160, quota=200, at=NOW
    )


# --- metadata in the envelope ---------------------------------------------------------------------------


def test_metadata_round_trips_through_the_codec_fast_and_careful() -> None:
    original = _envelope(ev.CredentialDeactivated(**NAMES, deactivated_at=NOW))
    raw = ev.encode(original)
    assert json.loads(raw)["metadata"] == {
        "actor": {"type": "api_key", "id": META.actor.id}, "source_ip": "203.0.113.9", "request_id": "req-7",
    }  # fmt: skip
    assert ev.decode(raw) == original
    assert ev.decode(raw, declared=("CredentialDeactivated", 1)) == original
    assert ev.decode(json.loads(raw)) == original


def test_an_event_without_metadata_keeps_its_exact_bytes_and_reads_as_unknown() -> None:
    envelope = _envelope(ev.CredentialDeactivated(**NAMES, deactivated_at=NOW), metadata=None)
    body = json.loads(ev.encode(envelope))
    assert "metadata" not in body
    decoded = ev.decode(ev.encode(envelope))
    assert decoded.metadata is None
    record = audit_event(decoded)
    assert record is not None
    assert record.actor == Actor(type="unknown", id=None)
    assert record.source_ip is None


def test_unknown_metadata_fields_are_ignored_and_a_junk_address_is_dropped() -> None:
    body = json.loads(ev.encode(_envelope(ev.CredentialResumed(**NAMES, resumed_at=NOW))))
    body["metadata"]["later_field"] = 1
    body["metadata"]["actor"]["later_field"] = 2
    body["metadata"]["source_ip"] = "not an address"
    decoded = ev.decode(json.dumps(body))
    assert decoded.metadata is not None
    assert decoded.metadata.actor == META.actor
    assert decoded.metadata.source_ip is None


def test_ipv6_source_addresses_are_normalised() -> None:
    assert EventMetadata(actor=Actor(type="session", id="u1"), source_ip="2001:DB8::0001").source_ip == "2001:db8::1"


# --- webhook events ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", _every_feed_event()[-4:], ids=lambda d: d.EVENT_TYPE)
def test_webhook_events_live_in_the_endpoint_stream_keyed_by_account(data: ev.EventData) -> None:
    envelope = _envelope(data)
    assert envelope.topic == topics.ACCOUNTS
    assert envelope.key == str(ACCOUNT).encode()
    assert envelope.stream_id == WEBHOOK
    assert ev.decode(ev.encode(envelope)) == envelope
    assert ev.EVENT_TYPES[data.EVENT_TYPE] is type(data)


def test_webhook_events_refuse_a_secret_field() -> None:
    with pytest.raises(ValueError, match="plaintext secrets"):
        ev.WebhookSecretRotated.model_validate({"account_id": ACCOUNT, "webhook_id": WEBHOOK, "secret": "whsec_x"})


# --- the feed's records ------------------------------------------------------------------------------------


def test_every_feed_type_is_produced_and_listed_once() -> None:
    types = [audit_event(_envelope(data)).type for data in _every_feed_event()]  # type: ignore[union-attr]
    types.append(audit_event_from_quota(_quota()).type)
    assert sorted(types) == sorted(AUDIT_TYPES)
    assert len(set(AUDIT_TYPES)) == len(AUDIT_TYPES)


@pytest.mark.parametrize(
    "data",
    [
        ev.AccountCreated(account_id=ACCOUNT, name="a", plan="free", created_at=NOW),
        ev.ApiKeyIssued(account_id=ACCOUNT, key_id=uuid.uuid4(), created_at=NOW),
        ev.ApiKeyRevoked(account_id=ACCOUNT, key_id=uuid.uuid4(), revoked_at=NOW),
        ev.DomainVerificationFailed(domain_id=DOMAIN, account_id=ACCOUNT, reason="no TXT", checked_at=NOW),
    ],
    ids=lambda d: d.EVENT_TYPE,
)
def test_events_outside_the_feed_give_none(data: ev.EventData) -> None:
    assert audit_event(_envelope(data)) is None


def test_no_secret_hash_or_verification_token_ever_reaches_the_public_json() -> None:
    for data in _every_feed_event():
        record = audit_event(_envelope(data))
        assert record is not None
        text = json.dumps(record.public_json())
        for forbidden in (HASH, PASSWORD, "secret_hash", "hash_scheme", "token-not-for-the-feed"):
            assert forbidden not in text, (data.EVENT_TYPE, forbidden)


def test_public_json_is_the_contract_body() -> None:
    data = ev.CredentialSuspended(**NAMES, reason="abuse", suspended_at=NOW)
    envelope = _envelope(data, position=42)
    record = audit_event(envelope)
    assert record is not None
    assert record.account_id == ACCOUNT and record.position == 42
    assert record.public_json() == {
        "id": str(envelope.event_id),
        "type": "smtp_credential.suspended",
        "occurred_at": ev.rfc3339(envelope.occurred_at),
        "actor": {"type": "api_key", "id": META.actor.id},
        "source_ip": "203.0.113.9",
        "subject": {"type": "smtp_credential", "id": str(CREDENTIAL)},
        "data": {
            "credential_id": str(CREDENTIAL), "domain_id": str(DOMAIN), "username": NAMES["username"],
            "reason": "abuse", "suspended_at": "2026-11-28T10:00:00Z",
        },
    }  # fmt: skip
    assert AuditEvent.model_validate(record.model_dump()) == record


def test_restrictions_keep_their_nested_limits_as_json() -> None:
    record = audit_event(_envelope(_every_feed_event()[5]))
    assert record is not None
    assert record.data["limits"] == {"messages_per_minute": 5, "messages_per_day": None}
    assert record.data["allowed_cidrs"] == ["203.0.113.0/24"]
    json.dumps(record.public_json())


def test_a_released_domain_is_in_the_feed_with_its_reason() -> None:
    released = next(d for d in _every_feed_event() if isinstance(d, ev.DomainReleased))
    record = audit_event(_envelope(released))
    assert record is not None and (record.type, record.subject.type, record.subject.id) == (
        "domain.released",
        "domain",
        DOMAIN,
    )
    assert record.public_json()["data"] == {
        "domain_id": str(DOMAIN), "name": "example.com", "reason": "verification_lost",
        "released_at": "2026-11-28T10:00:00Z",
    }  # fmt: skip


def test_subjects_name_the_aggregate() -> None:
    subjects = {audit_event(_envelope(d)).subject.type for d in _every_feed_event()}  # type: ignore[union-attr]
    assert subjects == {"smtp_credential", "domain", "webhook"}
    webhook = audit_event(_envelope(_every_feed_event()[-1]))
    assert webhook is not None and webhook.subject.id == WEBHOOK and webhook.data["reason"] == "failing for 3 days"


def test_quota_notices_have_a_stable_id_and_a_system_actor() -> None:
    first, again = audit_event_from_quota(_quota()), audit_event_from_quota(_quota())
    assert first == again
    assert first.type == audit.QUOTA_REACHED
    assert first.actor.type == "system"
    assert first.subject.id == CREDENTIAL and first.account_id == ACCOUNT
    assert first.public_json()["data"] == {
        "credential_id": str(CREDENTIAL), "day": "20261128", "percent": 80, "count": 160, "quota": 200,
        "at": "2026-11-28T10:00:00Z",
    }  # fmt: skip
    other = audit_event_from_quota(_quota().model_copy(update={"percent": 100}))
    assert other.id != first.id


def test_the_projection_row_carries_the_same_entry() -> None:
    for data in _every_feed_event():
        envelope = _envelope(data, position=9)
        row = audit.audit_row(envelope)
        assert row is not None and row.position == 9 and row.account_id == ACCOUNT
        assert (row.actor_type, row.actor_id, row.source_ip, row.request_id) == ("api_key", META.actor.id,
                                                                                "203.0.113.9", "req-7")  # fmt: skip
        assert audit.audit_event_of_row(row) == audit_event(envelope)
        assert HASH not in row.data and "secret_hash" not in row.data
    quota = audit.audit_row_from_quota(_quota())
    assert quota.position == 0 and audit.audit_event_of_row(quota) == audit_event_from_quota(_quota())
    assert audit.audit_row(_envelope(ev.ApiKeyIssued(account_id=ACCOUNT, key_id=uuid.uuid4(), created_at=NOW))) is None

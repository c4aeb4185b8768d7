"""The Kafka headers' (event_type, schema_version) only speed decoding up: the value decides, whatever they say."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
import taifa_events as ev


def _encoded() -> tuple[ev.Envelope, bytes]:
    data = ev.CredentialCreated(
        credential_id=uuid.uuid4(), account_id=uuid.uuid4(), domain_id=uuid.uuid4(), domain="example.com",
        username="3f2a9c1b@example.com", secret_hash=ev.hash_secret("not-a-real-password"),
        created_at=datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
    )  # fmt: skip
    envelope = ev.make_envelope(data, stream_version=1, position=7, correlation_id="req-1")
    return envelope, ev.encode(envelope)


def test_headers_name_the_type_and_version_of_the_value() -> None:
    envelope, raw = _encoded()
    headers = ev.kafka_headers(envelope.event_type, envelope.event_id, envelope.schema_version)
    assert dict(headers)["event_id"] == str(envelope.event_id).encode()
    declared = ev.declared_type(headers)
    assert declared == ("CredentialCreated", ev.CredentialCreated.SCHEMA_VERSION)
    assert ev.decode(raw, declared=declared) == ev.decode(raw) == envelope


@pytest.mark.parametrize(
    "declared",
    [("CredentialDeactivated", 1), ("CredentialCreated", 1), ("DomainRegistered", 1), ("Nonsense", 1)],
)
def test_headers_that_lie_change_nothing(declared: tuple[str, int]) -> None:
    envelope, raw = _encoded()
    assert ev.decode(raw, declared=declared) == envelope


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.update(schema_version="2"),
        lambda b: b.update(schema_version=2.0),
        lambda b: b.update(event_type=["CredentialCreated"]),
        lambda b: b["data"].pop("secret_hash"),
    ],
)
def test_a_value_refused_without_headers_is_refused_with_them(mutate) -> None:
    _, raw = _encoded()
    body = json.loads(raw)
    mutate(body)
    bad = json.dumps(body).encode()
    with pytest.raises(ev.InvalidEvent):
        ev.decode(bad)
    with pytest.raises(ev.InvalidEvent):
        ev.decode(bad, declared=("CredentialCreated", 2))


@pytest.mark.parametrize(
    "headers",
    [
        None,
        [],
        [("event_type", b"CredentialCreated")],
        [("schema_version", b"2")],
        [("event_type", b"CredentialCreated"), ("schema_version", b"two")],
        [("event_type", b"\xff"), ("schema_version", b"2")],
    ],
)
def test_missing_or_odd_headers_declare_nothing(headers) -> None:
    assert ev.declared_type(headers) is None

"""libs/events: round trip, forward compatibility, upcasting, refusals."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
import taifa_events as ev
from taifa_events import auth_cache, topics


def _created(**overrides) -> ev.CredentialCreated:
    fields = {
        "credential_id": uuid.uuid4(),
        "account_id": uuid.uuid4(),
        "domain_id": uuid.uuid4(),
        "domain": "example.com",
        "username": "3f2a9c1b@example.com",
        "secret_hash": ev.hash_secret("not-a-real-password"),
        "created_at": datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
    }
    return ev.CredentialCreated(**{**fields, **overrides})


def _envelope(data: ev.EventData, position: int = 7) -> ev.Envelope:
    return ev.make_envelope(data, stream_version=1, position=position, correlation_id="req-1")


def test_round_trip_keeps_every_field() -> None:
    original = _envelope(_created())
    decoded = ev.decode(ev.encode(original))
    assert decoded == original
    assert isinstance(decoded.data, ev.CredentialCreated)


def test_envelope_json_has_contract_fields_and_rfc3339_times() -> None:
    body = json.loads(ev.encode(_envelope(_created())))
    assert set(body) == {"event_id", "event_type", "schema_version", "stream_id", "stream_version",
                         "position", "occurred_at", "correlation_id", "data"}
    assert set(body["data"]) == {"credential_id", "account_id", "domain_id", "domain", "username",
                                 "secret_hash", "hash_scheme", "created_at", "secret_id"}
    assert body["data"]["created_at"] == "2026-11-23T10:00:00Z"
    assert body["occurred_at"].endswith("Z")


def test_credential_events_are_keyed_by_domain_id_on_the_credentials_topic() -> None:
    created = _created()
    deactivated = ev.CredentialDeactivated(
        credential_id=created.credential_id, account_id=created.account_id, domain_id=created.domain_id,
        username=created.username, deactivated_at=datetime.now(UTC),
    )
    for data in (created, deactivated):
        envelope = _envelope(data)
        assert envelope.key == str(created.domain_id).encode()
        assert envelope.topic == topics.SMTP_CREDENTIALS
        assert envelope.stream_id == created.credential_id


def test_unknown_fields_are_ignored() -> None:
    body = json.loads(ev.encode(_envelope(_created())))
    body["future_envelope_field"] = 1
    body["data"]["future_data_field"] = {"nested": True}
    decoded = ev.decode(json.dumps(body).encode())
    assert decoded.event_type == "CredentialCreated"
    assert not hasattr(decoded.data, "future_data_field")


def test_version_1_credential_created_is_upcast() -> None:
    body = json.loads(ev.encode(_envelope(_created())))
    body["schema_version"] = 1
    del body["data"]["hash_scheme"]
    decoded = ev.decode(json.dumps(body))
    assert decoded.schema_version == ev.CredentialCreated.SCHEMA_VERSION
    assert decoded.data.hash_scheme == "sha256"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b.update(event_type="CredentialExploded"), "unknown event_type"),
        (lambda b: b.update(schema_version=99), "newer than this code"),
        (lambda b: b.update(schema_version=True), "schema_version"),  # JSON true is not version 1
        (lambda b: b["data"].pop("domain_id"), "domain_id"),
        (lambda b: b["data"].update(secret_hash="short"), "secret_hash"),
        (lambda b: b.update(position=0), "position"),
    ],
)
def test_invalid_payload_is_refused_with_a_clear_reason(mutate, reason) -> None:
    body = json.loads(ev.encode(_envelope(_created())))
    mutate(body)
    with pytest.raises(ev.InvalidEvent, match=reason):
        ev.decode(json.dumps(body))


@pytest.mark.parametrize("raw", [b"not json", b"[1,2]", b"\xff\xfe", b"{}"])
def test_undecodable_bytes_are_refused(raw: bytes) -> None:
    with pytest.raises(ev.InvalidEvent):
        ev.decode(raw)


@pytest.mark.parametrize("field", ["password", "secret", "api_key"])
def test_no_plaintext_secret_field_is_accepted(field: str) -> None:
    with pytest.raises(ValueError, match="plaintext secrets"):
        _created(**{field: "hunter2-hunter2"})
    body = json.loads(ev.encode(_envelope(_created())))
    body["data"][field] = "hunter2-hunter2"
    with pytest.raises(ev.InvalidEvent) as excinfo:
        ev.decode(json.dumps(body))
    assert "hunter2" not in str(excinfo.value)


def test_plaintext_password_is_not_a_valid_secret_hash() -> None:
    import secrets

    with pytest.raises(ValueError):
        _created(secret_hash=secrets.token_urlsafe(32))


def test_secret_matches_only_the_right_secret() -> None:
    stored = ev.hash_secret("correct horse")
    assert ev.secret_matches("correct horse", stored)
    assert not ev.secret_matches("correct horsE", stored)
    assert not ev.secret_matches("correct horse", stored, scheme="md5")


def test_auth_cache_entry_round_trips_and_damaged_entries_read_as_missing() -> None:
    entry = auth_cache.AuthCacheEntry(
        credential_id=uuid.uuid4(), account_id=uuid.uuid4(), domain_id=uuid.uuid4(), domain="example.com",
        secret_hash=ev.hash_secret("x"), hash_scheme="sha256", active=True, position=5,
    )
    stored = {k.encode(): v.encode() for k, v in entry.to_redis().items()}
    assert auth_cache.AuthCacheEntry.from_redis(stored) == entry
    assert auth_cache.AuthCacheEntry.from_redis({}) is None
    assert auth_cache.AuthCacheEntry.from_redis({b"active": b"1"}) is None
    assert auth_cache.auth_key("AB@Example.COM") == auth_cache.auth_key("ab@example.com")


def test_revocation_message_round_trips_with_the_credential_id() -> None:
    credential_id = uuid.uuid4()
    message = auth_cache.revocation_message("AB@Example.com", credential_id)
    assert auth_cache.parse_revocation(message) == auth_cache.Revocation("ab@example.com", str(credential_id))
    assert auth_cache.parse_revocation(message.encode()) == auth_cache.Revocation("ab@example.com", str(credential_id))


def test_plain_username_revocation_revokes_every_session_of_the_name() -> None:
    assert auth_cache.parse_revocation(b"ab@example.com") == auth_cache.Revocation("ab@example.com", None)


def test_damaged_revocation_message_reads_as_none() -> None:
    assert auth_cache.parse_revocation("{not json") is None
    assert auth_cache.parse_revocation('{"username": 3}') is None
    assert auth_cache.parse_revocation("") is None


def test_a_change_notice_is_read_as_a_re_read_of_that_credential_and_never_as_a_revocation() -> None:
    credential_id = uuid.uuid4()
    message = auth_cache.change_message("AB@Example.com", credential_id)
    assert json.loads(message) == {"username": "ab@example.com", "credential_id": str(credential_id), "kind": "changed"}
    notice = auth_cache.parse_notice(message.encode())
    assert type(notice) is auth_cache.CredentialChange
    assert notice == ("ab@example.com", str(credential_id))
    assert auth_cache.parse_revocation(message) is None
    # Revocations in both old forms still read as revocations through the same parser.
    assert type(auth_cache.parse_notice(auth_cache.revocation_message("ab@example.com", credential_id))) is (
        auth_cache.Revocation
    )
    assert type(auth_cache.parse_notice("ab@example.com")) is auth_cache.Revocation


def test_a_notice_of_an_unknown_kind_is_a_re_read_never_a_revocation_of_every_session() -> None:
    for message in ('{"username": "ab@example.com", "kind": "renamed"}', '{"username": "Ab@example.com", "kind": 1}'):
        assert type(auth_cache.parse_notice(message)) is auth_cache.CredentialChange
        assert auth_cache.parse_notice(message) == ("ab@example.com", None)
        assert auth_cache.parse_revocation(message) is None
    assert auth_cache.parse_notice('{"kind": "changed"}') is None


def test_domain_owner_key_is_case_and_trailing_dot_insensitive() -> None:
    assert auth_cache.domain_owner_key("Mail.Example.COM.") == auth_cache.domain_owner_key("mail.example.com")

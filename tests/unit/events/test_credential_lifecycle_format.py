"""libs/events, issue 15: lifecycle events, the 2->3 upcaster, the `tmsmtp_` password format, cache entry v2."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime

import pytest
import taifa_events as ev
from taifa_events import auth_cache
from taifa_events.auth_cache import AuthCacheEntry, CachedSecret

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
IDS = {"credential_id": uuid.uuid4(), "account_id": uuid.uuid4(), "domain_id": uuid.uuid4()}
HASH_A, HASH_B = ev.hash_secret("a"), ev.hash_secret("b")


def _v1_mapping() -> dict[str, str]:
    return {
        "credential_id": str(IDS["credential_id"]), "account_id": str(IDS["account_id"]),
        "domain_id": str(IDS["domain_id"]), "domain": "example.com", "secret_hash": HASH_A,
        "hash_scheme": "sha256", "active": "1", "position": "5",
    }  # fmt: skip


def _v2(**overrides: object) -> AuthCacheEntry:
    fields: dict[str, object] = {
        **IDS, "domain": "example.com", "secret_hash": HASH_B, "hash_scheme": "sha256", "active": True,
        "position": 9, "status": "active",
        "secrets": (CachedSecret(id=uuid.uuid4(), hash=HASH_B, scheme="sha256", expires_at=None),
                    CachedSecret(id=uuid.uuid4(), hash=HASH_A, scheme="sha256", expires_at=2_000)),
    }  # fmt: skip
    return AuthCacheEntry.model_validate({**fields, **overrides})


# --- events -------------------------------------------------------------------------------------------


def test_a_v2_credential_created_upcasts_to_the_stable_derived_secret_id() -> None:
    data = {**{k: str(v) for k, v in IDS.items()}, "domain": "example.com", "username": "abc@example.com",
            "secret_hash": HASH_A, "hash_scheme": "sha256", "created_at": "2026-11-23T10:00:00Z"}  # fmt: skip
    upcast = ev.parse_data("CredentialCreated", 2, dict(data))
    assert isinstance(upcast, ev.CredentialCreated)
    assert upcast.secret_id == ev.initial_secret_id(IDS["credential_id"])
    assert ev.parse_data("CredentialCreated", 2, dict(data)).secret_id == upcast.secret_id  # stable
    assert ev.parse_data("CredentialCreated", 1, dict(data)).secret_id == upcast.secret_id
    other = ev.initial_secret_id(uuid.uuid4())
    assert other != upcast.secret_id


def test_a_v3_credential_created_keeps_its_secret_id() -> None:
    secret_id = uuid.uuid4()
    data = {**{k: str(v) for k, v in IDS.items()}, "domain": "example.com", "username": "abc@example.com",
            "secret_hash": HASH_A, "created_at": "2026-11-23T10:00:00Z", "secret_id": str(secret_id)}  # fmt: skip
    assert ev.parse_data("CredentialCreated", 3, data).secret_id == secret_id  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "data",
    [
        ev.CredentialSecretRotated(
            **IDS,
            username="abc@example.com",
            secret_id=uuid.uuid4(),
            secret_hash=HASH_B,
            previous_secret_id=uuid.uuid4(),
            previous_secret_expires_at=NOW,
            rotated_at=NOW,
        ),
        ev.CredentialSecretRevoked(**IDS, username="abc@example.com", secret_id=uuid.uuid4(), revoked_at=NOW),
        ev.CredentialSuspended(**IDS, username="abc@example.com", reason="abuse report", suspended_at=NOW),
        ev.CredentialResumed(**IDS, username="abc@example.com", resumed_at=NOW),
        ev.CredentialRestrictionsChanged(
            **IDS,
            username="abc@example.com",
            allowed_cidrs=["203.0.113.0/24"],
            expires_at=NOW,
            limits=ev.CredentialLimits(messages_per_minute=10),
            changed_at=NOW,
        ),
    ],
    ids=lambda d: type(d).__name__,
)
def test_lifecycle_events_round_trip_on_the_credentials_topic_keyed_by_domain(data: ev.EventData) -> None:
    envelope = ev.make_envelope(data, stream_version=2, position=3, correlation_id="req")
    assert ev.decode(ev.encode(envelope)) == envelope
    assert envelope.topic == ev.topics.SMTP_CREDENTIALS and envelope.key == str(IDS["domain_id"]).encode()
    assert ev.EVENT_TYPES[envelope.event_type] is type(data)


def test_suspension_reason_and_limits_are_bounded() -> None:
    with pytest.raises(ValueError):
        ev.CredentialSuspended(**IDS, username="abc@example.com", reason="x" * 201, suspended_at=NOW)
    with pytest.raises(ValueError):
        ev.CredentialLimits(messages_per_day=0)


# --- passwords ----------------------------------------------------------------------------------------


def test_new_smtp_passwords_match_the_published_pattern_and_their_checksum() -> None:
    passwords = {ev.new_smtp_password() for _ in range(200)}
    assert len(passwords) == 200
    for password in passwords:
        assert re.fullmatch(ev.SMTP_PASSWORD_PATTERN, password) and len(password) == 7 + 43 + 6
        assert ev.smtp_password_checksum_ok(password)


def test_a_tmsmtp_password_with_one_character_changed_fails_the_checksum() -> None:
    password = ev.new_smtp_password()
    for index in (7, 30, 49, len(password) - 1):
        changed = password[:index] + ("A" if password[index] != "A" else "B") + password[index + 1 :]
        assert not ev.smtp_password_checksum_ok(changed)
    assert not ev.smtp_password_checksum_ok(password[:-1])  # truncated
    assert not ev.smtp_password_checksum_ok(password + "x")
    assert not ev.smtp_password_checksum_ok(password + "\n")


def test_the_checksum_is_crc32_in_base62_of_the_body() -> None:
    body = "A" * 43
    import zlib

    value, digits = zlib.crc32(body.encode()), ""
    while value:
        value, rest = divmod(value, 62)
        digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[rest] + digits
    assert ev.smtp_password_checksum_ok("tmsmtp_" + body + digits.rjust(6, "0"))


def test_passwords_of_the_old_format_pass_the_checksum_check() -> None:
    assert ev.smtp_password_checksum_ok(ev.new_secret())
    assert ev.smtp_password_checksum_ok("anything-without-the-prefix")


# --- cache entry v2 -----------------------------------------------------------------------------------


def test_a_v1_entry_reads_as_one_secret_with_the_derived_id_and_no_restrictions() -> None:
    entry = AuthCacheEntry.from_redis(_v1_mapping())
    assert entry is not None and entry.status == "active" and entry.active
    assert entry.secrets == (CachedSecret(id=ev.initial_secret_id(IDS["credential_id"]), hash=HASH_A,
                                          scheme="sha256", expires_at=None),)  # fmt: skip
    assert entry.expires_at is None and entry.allowed_cidrs == () and entry.limits == ev.CredentialLimits()
    assert entry.valid_secrets(10**12) == entry.secrets and entry.address_allowed("198.51.100.7")
    tombstone = AuthCacheEntry.from_redis({**_v1_mapping(), "active": "0"})
    assert tombstone is not None and tombstone.status == "deactivated"


def test_a_v1_entry_never_takes_v2_fields_it_happens_to_hold() -> None:
    stray = {**_v1_mapping(), "status": "active", "allowed_cidrs": '["10.0.0.0/8"]', "secrets": "[]"}
    entry = AuthCacheEntry.from_redis(stray)
    assert entry is not None and entry.allowed_cidrs == () and len(entry.secrets) == 1


def test_a_v2_entry_round_trips_through_redis_fields() -> None:
    entry = _v2(expires_at=3_000, allowed_cidrs=("203.0.113.0/24", "2001:db8::/48"),
                limits=ev.CredentialLimits(messages_per_minute=5, messages_per_day=100))  # fmt: skip
    mapping = entry.to_redis()
    assert mapping["format"] == "2" and mapping["active"] == "1" and mapping["secret_hash"] == HASH_B
    assert json.loads(mapping["secrets"])[1]["expires_at"] == 2_000
    assert AuthCacheEntry.from_redis(mapping) == entry
    assert AuthCacheEntry.from_redis({k.encode(): v.encode() for k, v in mapping.items()}) == entry


@pytest.mark.parametrize(
    "damage",
    [
        {"format": "3"},
        {"format": "x"},
        {"secrets": "[{"},
        {"secrets": "[]"},
        {"allowed_cidrs": '["10.0.0.1/8"]'},
        {"allowed_cidrs": "nope"},
        {"limits": '{"messages_per_minute": 0}'},
        {"expires_at": "soon"},
        {"status": "paused"},
        {"status": "deactivated"},  # disagrees with active = 1
    ],
)
def test_an_unknown_format_or_a_damaged_v2_entry_reads_as_missing(damage: dict[str, str]) -> None:
    assert AuthCacheEntry.from_redis({**_v2().to_redis(), **damage}) is None


def test_valid_secrets_drop_expired_ones_and_keep_newest_first() -> None:
    entry = _v2()
    assert [s.hash for s in entry.valid_secrets(1_999.9)] == [HASH_B, HASH_A]
    assert [s.hash for s in entry.valid_secrets(2_000)] == [HASH_B]


def test_credential_expiry_is_reached_at_expires_at() -> None:
    entry = _v2(expires_at=3_000)
    assert not entry.is_expired(2_999.5) and entry.is_expired(3_000)
    assert not _v2().is_expired(10**12)


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("203.0.113.9", True),
        ("::ffff:203.0.113.9", True),
        ("203.0.114.1", False),
        ("2001:db8::1", True),
        ("2001:db9::1", False),
        ("not an address", False),
        ("", False),
    ],
)
def test_address_allowed_checks_the_allowlist(address: str, allowed: bool) -> None:
    entry = _v2(allowed_cidrs=("203.0.113.0/24", "2001:db8::/48"))
    assert entry.address_allowed(address) is allowed
    assert _v2().address_allowed(address)  # an empty list allows any address


def test_an_ipv4_mapped_network_stored_as_given_matches_its_ipv4_clients() -> None:
    # Written before the API stored the IPv4 form: the relay compares mapped client addresses as IPv4.
    entry = _v2(allowed_cidrs=("::ffff:203.0.113.0/120", "::/80"))
    assert entry.address_allowed("203.0.113.5") and entry.address_allowed("::ffff:203.0.113.5")
    assert not entry.address_allowed("198.51.100.7")
    assert entry.address_allowed("::1")  # a shorter prefix stays an IPv6 network


def test_the_revocation_message_helpers_still_parse() -> None:
    assert auth_cache.parse_revocation(auth_cache.revocation_message("A@x.example", IDS["credential_id"])) == (
        auth_cache.Revocation("a@x.example", str(IDS["credential_id"]))
    )

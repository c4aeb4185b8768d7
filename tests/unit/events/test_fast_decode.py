"""Case E10 (docs/testing.md): the fast path of `decode` (taifa_events.fast_decode, issue 18) against the careful path:
on the same inputs, both accept (with equal envelopes) or the fast path hands over and the careful path's refusal
and reason stand.

Inputs: one envelope of every event type at its current version, with and without metadata, CredentialCreated at v1
and v2 (read through the upcasters' defaults), then hypothesis's mutations of them (a field replaced by an odd
value, removed, or an unknown one added), each decoded with no Kafka header hint, the right one and a wrong one.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import taifa_events as ev
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from taifa_events.envelope import _decode_carefully, _decode_fast
from taifa_events.metadata import Actor, EventMetadata
from taifa_events.secrets import SECRET_ID_NAMESPACE, initial_secret_id
from taifa_events.upcasters import BY_DEFAULTS, UPCASTERS, upcast

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
ACCOUNT, DOMAIN, CREDENTIAL, WEBHOOK, KEY = (uuid.uuid4() for _ in range(5))
NAMES = {"credential_id": CREDENTIAL, "account_id": ACCOUNT, "domain_id": DOMAIN, "username": "abcd1234@example.com"}
HASH = ev.hash_secret("tmsmtp_" + "x" * 49)
META = EventMetadata(actor=Actor(type="api_key", id=str(KEY)), source_ip="203.0.113.9", request_id="req-7")


def _every_type() -> list[ev.EventData]:
    return [
        ev.AccountCreated(account_id=ACCOUNT, name="Example", plan="pro", created_at=NOW),
        ev.ApiKeyIssued(account_id=ACCOUNT, key_id=KEY, created_at=NOW),
        ev.ApiKeyRevoked(account_id=ACCOUNT, key_id=KEY, revoked_at=NOW),
        ev.DomainRegistered(
            domain_id=DOMAIN, account_id=ACCOUNT, name="example.com", verification_name="_taifa.example.com",
            verification_value="taifa-verification=abc", created_at=NOW,
        ),
        ev.DomainVerified(domain_id=DOMAIN, account_id=ACCOUNT, name="example.com", verified_at=NOW),
        ev.DomainVerificationFailed(domain_id=DOMAIN, account_id=ACCOUNT, reason="no TXT record", checked_at=NOW),
        ev.DomainReleased(domain_id=DOMAIN, account_id=ACCOUNT, name="example.com", released_at=NOW),
        ev.CredentialCreated(**NAMES, domain="example.com", secret_hash=HASH, created_at=NOW),
        ev.CredentialDeactivated(**NAMES, deactivated_at=NOW),
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
        ev.WebhookEndpointCreated(account_id=ACCOUNT, webhook_id=WEBHOOK, url="https://hooks.example.com/x",
                                  events=["*"]),
        ev.WebhookSecretRotated(account_id=ACCOUNT, webhook_id=WEBHOOK),
        ev.WebhookEndpointDeleted(account_id=ACCOUNT, webhook_id=WEBHOOK),
        ev.WebhookEndpointDisabled(account_id=ACCOUNT, webhook_id=WEBHOOK, reason="failing for 3 days"),
    ]  # fmt: skip


def _bodies() -> list[dict[str, Any]]:
    """JSON bodies of every type (with and without metadata) and CredentialCreated v1 and v2."""
    bodies = []
    for data in _every_type():
        for metadata in (None, META):
            envelope = ev.make_envelope(data, stream_version=1, position=9, correlation_id="req-7", metadata=metadata)
            bodies.append(json.loads(ev.encode(envelope)))
    created = next(b for b in bodies if b["event_type"] == "CredentialCreated")
    v2 = json.loads(json.dumps(created))
    v2["schema_version"] = 2
    del v2["data"]["secret_id"]
    v1 = json.loads(json.dumps(v2))
    v1["schema_version"] = 1
    del v1["data"]["hash_scheme"]
    return [*bodies, v2, v1]


BODIES = _bodies()
assert {b["event_type"] for b in BODIES} == set(ev.EVENT_TYPES)


def _outcome(decode: Any, raw: Any) -> tuple[str, Any]:
    try:
        envelope = decode(raw)
    except ev.InvalidEvent as refused:
        return "refused", str(refused)
    return "accepted", (ev.envelope_to_json(envelope), type(envelope.data), envelope.schema_version)


def _check(raw: bytes | dict[str, Any], declared: tuple[str, int] | None) -> str:
    careful = _outcome(_decode_carefully, raw)
    fast = _decode_fast(raw, declared)
    if fast is not None:
        assert careful[0] == "accepted", careful
        assert (ev.envelope_to_json(fast), type(fast.data), fast.schema_version) == careful[1]
        assert fast == _decode_carefully(raw)
    assert _outcome(lambda r: ev.decode(r, declared=declared), raw) == careful
    return careful[0] + ("-fast" if fast is not None else "")


@pytest.mark.parametrize("body", BODIES, ids=lambda b: f"{b['event_type']}-v{b['schema_version']}-{'metadata' in b}")
def test_every_type_and_the_by_defaults_versions_take_the_fast_path(body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    declared = (body["event_type"], body["schema_version"])
    for hint in (None, declared):
        assert _check(raw, hint) == "accepted-fast"
    assert _check(body, None) == "accepted-fast"
    decoded = ev.decode(raw)
    assert decoded.schema_version == ev.EVENT_TYPES[body["event_type"]].SCHEMA_VERSION
    assert (decoded.metadata is None) == ("metadata" not in body)
    if body["schema_version"] != decoded.schema_version:
        # An older version's envelope gets the current version set in place: still frozen, equal to the careful
        # path's in every field, its fields-set and its hash.
        careful = _decode_carefully(raw)
        assert dict(decoded) == dict(careful)
        assert decoded.model_fields_set == careful.model_fields_set
        assert hash(decoded) == hash(careful)
        with pytest.raises(ValidationError):
            decoded.schema_version = 1  # type: ignore[misc]


# Values that sit at the edges of the schemas: UUIDs in other forms, times with and without an offset, numbers
# of every kind, the wrong JSON types, long strings, a plaintext secret.
ODD_VALUES = st.sampled_from(
    [
        None, True, False, 0, 1, 2, 3, -1, 2.0, 1.5, 10**30, "", "2", "x" * 201, "tmsmtp_" + "y" * 49,
        str(CREDENTIAL).upper(), CREDENTIAL.hex, f"{{{CREDENTIAL}}}", f"urn:uuid:{CREDENTIAL}", f"uuid:{CREDENTIAL}",
        str(CREDENTIAL)[:-1] + "g", "2026-11-28T10:00:00", "2026-11-28T10:00:00+02:00", "2026-11-28", 1795860000,
        "sha256", "md5", "free", "pro", "203.0.113.7", "2001:DB8::1", "api_key", "unknown", "CredentialCreated",
        "DomainVerified", [], ["*"], {}, {"type": "api_key"}, {"messages_per_minute": 0}, "0" * 64,
    ]
)  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> tuple[dict[str, Any], tuple[str, int] | None]:
    body = json.loads(json.dumps(draw(st.sampled_from(BODIES))))
    declared_right = (body["event_type"], body["schema_version"])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        where = draw(st.sampled_from(["envelope", "data", "metadata"]))
        target = body if where == "envelope" else body.get(where)
        if not isinstance(target, dict):
            continue
        key = draw(st.sampled_from([*sorted(target), "secret_id", "hash_scheme", "password", "later_field"]))
        if draw(st.booleans()) and key in target:
            del target[key]
        else:
            target[key] = json.loads(json.dumps(draw(ODD_VALUES)))  # a copy: never one list or dict in two places
    hint = draw(st.sampled_from([None, declared_right, ("CredentialCreated", 2), ("DomainVerified", 1), ("X", 1)]))
    return body, hint


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_envelopes_are_accepted_or_refused_alike(case: tuple[dict[str, Any], tuple[str, int] | None]) -> None:
    body, hint = case
    event(_check(json.dumps(body).encode(), hint))  # --hypothesis-show-statistics: how many took each way
    _check(body, None)


@pytest.mark.parametrize("raw", [b"", b"null", b"[]", b"{", b"\xff", b'{"event_type":1}', b'"CredentialCreated"'])
def test_what_is_not_an_envelope_is_refused_by_the_careful_path(raw: bytes) -> None:
    assert _decode_fast(raw) is None
    assert _check(raw, None) == "refused"
    assert _check(raw, ("CredentialCreated", 3)) == "refused"


@pytest.mark.parametrize("step", sorted(BY_DEFAULTS))
@given(credential=st.uuids(), form=st.sampled_from([str, lambda u: str(u).upper(), lambda u: u.hex]))
def test_each_by_defaults_upcaster_adds_what_the_current_defaults_give(step: tuple[str, int], credential, form) -> None:
    event_type, version = step
    cls = ev.EVENT_TYPES[event_type]
    current = next(b for b in BODIES if b["event_type"] == event_type and b["schema_version"] == cls.SCHEMA_VERSION)
    data = {**current["data"], "credential_id": form(credential)}
    for added in range(version, cls.SCHEMA_VERSION):  # the fields each later step adds are absent at `version`
        data = {k: v for k, v in data.items() if k not in _added_by(event_type, added, data)}
    assert cls.model_validate(upcast(event_type, version, cls.SCHEMA_VERSION, data)) == cls.model_validate(data)


def _added_by(event_type: str, version: int, data: dict[str, Any]) -> set[str]:
    before = {k: v for k, v in data.items() if k not in ("secret_id", "hash_scheme")}
    return set(UPCASTERS[(event_type, version)](dict(before))) - set(before)


@given(credential=st.uuids())
def test_the_initial_secret_id_is_uuid5_of_the_canonical_credential_id(credential: uuid.UUID) -> None:
    expected = uuid.uuid5(SECRET_ID_NAMESPACE, f"{credential}:initial")
    for form in (credential, str(credential), str(credential).upper(), credential.hex, f"urn:uuid:{credential}"):
        assert initial_secret_id(form) == expected
    bad = str(credential)[:-1] + "g"
    with pytest.raises(ValueError) as refused:
        initial_secret_id(bad)
    with pytest.raises(ValueError) as reference:
        uuid.UUID(bad)
    assert str(refused.value) == str(reference.value)


OCTETS = st.one_of(st.integers(0, 999).map(str), st.integers(0, 99).map(lambda n: f"0{n}"), st.just("١"))


@given(st.one_of(st.ip_addresses().map(str), st.lists(OCTETS, min_size=3, max_size=5).map(".".join), st.text()))
def test_a_source_address_reads_as_ipaddress_writes_it(text: str) -> None:
    # metadata's dotted-quad fast path (issue 18: every event carries an address) must keep ipaddress's answer.
    import ipaddress

    try:
        expected: str | None = str(ipaddress.ip_address(text))
    except ValueError:
        expected = None
    if len(text) <= 64:
        assert EventMetadata(actor=Actor(type="system"), source_ip=text).source_ip == expected

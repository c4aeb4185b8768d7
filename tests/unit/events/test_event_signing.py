"""Event signatures (taifa_events.signing): what the API attaches and the projector checks."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

import pytest
from taifa_events import CredentialCreated, encode, hash_secret, make_envelope, signing
from taifa_events.signing import InvalidKeyring, Keyring, SignatureRefused, signature_of


def key() -> str:
    return secrets.token_hex(32)


def value() -> bytes:
    domain_id = uuid.uuid4()
    data = CredentialCreated(
        credential_id=uuid.uuid4(),
        account_id=uuid.uuid4(),
        domain_id=domain_id,
        domain="example.com",
        username="abc@example.com",
        secret_hash=hash_secret("x" * 43),
        created_at=datetime(2026, 11, 28, tzinfo=UTC),
    )
    return encode(make_envelope(data, stream_version=1, position=1, correlation_id="t"))


def refusal(ring: Keyring, raw: bytes, headers: list[tuple[str, bytes]]) -> str:
    with pytest.raises(SignatureRefused) as refused:
        ring.verify(raw, signature_of(headers))
    return refused.value.reason


def test_a_signed_value_verifies_with_the_key_that_signed_it() -> None:
    ring = Keyring.parse(f"k1:{key()}", active="k1")
    raw = value()
    headers = ring.headers(raw)
    assert dict(headers)[signing.HEADER_KEY_ID] == b"k1"
    assert len(bytes.fromhex(dict(headers)[signing.HEADER_SIGNATURE].decode())) == 32
    assert ring.verify(raw, signature_of([*headers, ("event_type", b"CredentialCreated")])) == "k1"


def test_the_encoding_signed_is_deterministic_for_an_envelope() -> None:
    raw = value()
    ring = Keyring.parse(f"k1:{key()}", active="k1")
    assert ring.headers(raw) == ring.headers(bytes(raw))


def test_a_tampered_value_is_refused() -> None:
    ring = Keyring.parse(f"k1:{key()}", active="k1")
    raw = value()
    headers = ring.headers(raw)
    tampered = raw.replace(b'"abc@example.com"', b'"evil@example.com"')
    assert tampered != raw
    assert refusal(ring, tampered, headers) == signing.REASON_BAD_SIGNATURE
    assert refusal(ring, raw + b" ", headers) == signing.REASON_BAD_SIGNATURE


def test_a_record_without_a_signature_header_is_unsigned() -> None:
    ring = Keyring.parse(f"k1:{key()}", active="k1")
    assert refusal(ring, value(), []) == signing.REASON_UNSIGNED
    assert refusal(ring, value(), [(signing.HEADER_KEY_ID, b"k1")]) == signing.REASON_UNSIGNED


def test_a_signature_by_a_key_the_verifier_does_not_hold_is_refused() -> None:
    verifier = Keyring.parse(f"k1:{key()}")
    attacker = Keyring.parse(f"k2:{key()}", active="k2")
    raw = value()
    assert refusal(verifier, raw, attacker.headers(raw)) == signing.REASON_UNKNOWN_KEY
    # An attacker naming the real key id with a secret of their own gets a tag that does not match.
    forger = Keyring.parse(f"k1:{key()}", active="k1")
    assert refusal(verifier, raw, forger.headers(raw)) == signing.REASON_BAD_SIGNATURE


def test_malformed_signature_headers_are_refused_not_crashed_on() -> None:
    ring = Keyring.parse(f"k1:{key()}", active="k1")
    raw = value()
    for tag in (b"zz", b"", b"00" * 31, "é".encode(), b"00" * 33):
        assert refusal(ring, raw, [(signing.HEADER_SIGNATURE, tag), (signing.HEADER_KEY_ID, b"k1")]) == (
            signing.REASON_BAD_SIGNATURE
        )
    good = dict(ring.headers(raw))[signing.HEADER_SIGNATURE]
    assert refusal(ring, raw, [(signing.HEADER_SIGNATURE, good)]) == signing.REASON_UNKNOWN_KEY
    assert refusal(ring, None, ring.headers(raw)) == signing.REASON_BAD_SIGNATURE  # type: ignore[arg-type]


def test_rotation_with_two_keys_old_and_new_signatures_both_verify() -> None:
    old, new = key(), key()
    before = Keyring.parse(f"2026a:{old}", active="2026a")
    during = Keyring.parse(f"2026a:{old}, 2026b:{new}", active="2026b")
    raw = value()
    assert during.verify(raw, signature_of(before.headers(raw))) == "2026a"
    assert during.verify(raw, signature_of(during.headers(raw))) == "2026b"
    after = Keyring.parse(f"2026b:{new}")
    assert after.verify(raw, signature_of(during.headers(raw))) == "2026b"
    assert refusal(after, raw, before.headers(raw)) == signing.REASON_UNKNOWN_KEY


@pytest.mark.parametrize(
    ("text", "active", "message"),
    [
        ("", None, "no event signing key"),
        ("k1", None, "id:secret"),
        ("k1:", None, "id:secret"),
        ("k1:short", None, "shorter than 32 bytes"),
        ("bad id:" + "x" * 32, None, "is not 1-64"),
        ("k1:" + "x" * 32 + ",k1:" + "y" * 32, None, "number 2 has the id of an earlier one"),
        ("k1:" + "x" * 32, "k2", "not among the ids of the 1 configured keys"),
    ],
)
def test_unusable_keys_are_refused_with_a_message_that_never_shows_a_secret(
    text: str, active: str | None, message: str
) -> None:
    with pytest.raises(InvalidKeyring, match=message) as refused:
        Keyring.parse(text, active)
    assert "x" * 32 not in str(refused.value) and "short" not in str(refused.value).replace("shorter", "")


@pytest.mark.parametrize("secret", [key(), "A1b2-C3d4_" * 4, "A1b2+C3d4/" * 4 + "=="])
def test_a_secret_written_where_an_id_goes_is_never_in_the_error(secret: str) -> None:
    for text, active in ((f"{secret}:k1", "k1"), (f"k1:{key()}", secret), (f"{secret}:{key()},{secret}:{key()}", None)):
        with pytest.raises(InvalidKeyring) as refused:
            Keyring.parse(text, active)
        assert secret not in str(refused.value)


def test_a_verify_only_keyring_cannot_sign_and_its_repr_shows_no_secret() -> None:
    secret = key()
    ring = Keyring.parse(f"k1:{secret}")
    with pytest.raises(InvalidKeyring, match="TAIFA_EVENT_SIGNING_KEY_ID"):
        ring.headers(b"{}")
    assert secret not in repr(ring) and "k1" in repr(ring)


def test_the_tag_is_hmac_sha256_over_the_context_and_the_value() -> None:
    # _tag names the digest as a string (OpenSSL's one-shot HMAC, issue 18): the tag must stay HMAC-SHA256.
    import hashlib
    import hmac

    secret, raw = key(), value()
    ring = Keyring.parse(f"k1:{secret}", "k1")
    expected = hmac.new(secret.encode(), signing.SIGNATURE_CONTEXT + raw, hashlib.sha256).hexdigest()
    assert dict(ring.headers(raw))[signing.HEADER_SIGNATURE] == expected.encode()


def test_a_usage_records_tag_never_verifies_as_an_events() -> None:
    # Domain separation: a usage record (signed by the projector) copied to an event topic, headers and all, is
    # refused there; readers of the usage topic take both contexts (older projectors signed usage as events).
    ring = Keyring({"k1": secrets.token_bytes(32)}, "k1")
    value = b'{"type":"usage_window","data":{}}'
    usage = signature_of(ring.headers(value, signing.USAGE_CONTEXT))
    event = signature_of(ring.headers(value))
    with pytest.raises(SignatureRefused) as refused:
        ring.verify(value, usage)
    assert refused.value.reason == signing.REASON_BAD_SIGNATURE
    assert ring.verify(value, usage, signing.USAGE_CONTEXTS) == "k1"
    assert ring.verify(value, event, signing.USAGE_CONTEXTS) == "k1"
    assert ring.verify(value, event) == "k1"
    assert usage != event

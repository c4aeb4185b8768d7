"""Webhook signing secrets: generation, AES-GCM key ring, round trip, refusals."""

from __future__ import annotations

import base64
import uuid

import pytest
from taifa_api.adapters.webhook_secrets import (
    WebhookKeyError,
    WebhookSecretBox,
    generate_key_ring_entry,
    new_webhook_secret,
)

KEY_A = "a:" + base64.b64encode(b"A" * 32).decode()
KEY_B = "b:" + base64.b64encode(b"B" * 32).decode()


def test_new_secret_is_whsec_and_32_random_bytes() -> None:
    secret = new_webhook_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert new_webhook_secret() != secret


def test_round_trip_and_ciphertext_hides_the_secret() -> None:
    box = WebhookSecretBox.parse(KEY_A)
    secret, webhook_id = new_webhook_secret(), uuid.uuid4()
    sealed = box.encrypt(secret, webhook_id)
    assert secret.encode() not in sealed
    assert base64.b64decode(secret.removeprefix("whsec_")) not in sealed
    assert box.decrypt(sealed, webhook_id) == secret
    assert box.encrypt(secret, webhook_id) != sealed  # a fresh nonce each time
    assert box.key_id_of(sealed) == "a"


def test_wrong_key_is_refused() -> None:
    sealed = WebhookSecretBox.parse(KEY_A).encrypt("whsec_x", uuid.uuid4())
    other_key_same_id = "a:" + base64.b64encode(b"Z" * 32).decode()
    with pytest.raises(WebhookKeyError, match="does not decrypt"):
        WebhookSecretBox.parse(other_key_same_id).decrypt(sealed, uuid.uuid4())
    with pytest.raises(WebhookKeyError, match="not configured"):
        WebhookSecretBox.parse(KEY_B).decrypt(sealed, uuid.uuid4())


def test_ciphertext_is_bound_to_its_endpoint_and_tamper_evident() -> None:
    box = WebhookSecretBox.parse(KEY_A)
    webhook_id = uuid.uuid4()
    sealed = box.encrypt("whsec_x", webhook_id)
    with pytest.raises(WebhookKeyError, match="another endpoint"):
        box.decrypt(sealed, uuid.uuid4())
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(WebhookKeyError):
        box.decrypt(tampered, webhook_id)
    for junk in (b"", b"v1:", b"v1:a:short", b"v2:a:" + b"\0" * 40, b"v1:bad id:" + b"\0" * 40):
        with pytest.raises(WebhookKeyError):
            box.decrypt(junk, webhook_id)


def test_key_rotation_first_key_encrypts_all_decrypt() -> None:
    webhook_id = uuid.uuid4()
    old = WebhookSecretBox.parse(KEY_A).encrypt("whsec_old", webhook_id)
    ring = WebhookSecretBox.parse(f"{KEY_B}, {KEY_A}")
    assert ring.primary_key_id == "b" and ring.key_ids == ("b", "a")
    assert ring.decrypt(old, webhook_id) == "whsec_old"
    assert ring.needs_reencryption(old)
    new = ring.encrypt("whsec_new", webhook_id)
    assert ring.key_id_of(new) == "b" and not ring.needs_reencryption(new)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no webhook secret key"),
        ("a", "id:base64key"),
        ("a:!!!notbase64", "not valid base64"),
        ("a:" + base64.b64encode(b"short").decode(), "not 32 bytes"),
        ("bad id:" + base64.b64encode(b"A" * 32).decode(), "is not 1-64"),
        (f"{KEY_A},{KEY_A}", "appears twice"),
    ],
)
def test_bad_key_rings_are_refused_without_key_material(text: str, reason: str) -> None:
    with pytest.raises(WebhookKeyError, match=reason) as refused:
        WebhookSecretBox.parse(text)
    assert "QUFB" not in str(refused.value)  # base64 of the key bytes never appears


def test_repr_shows_ids_only_and_generated_entries_parse() -> None:
    box = WebhookSecretBox.parse(generate_key_ring_entry("dev-1"))
    assert box.primary_key_id == "dev-1"
    assert repr(box) == "WebhookSecretBox(primary='dev-1', keys=['dev-1'])"


def test_a_key_ring_entry_written_the_wrong_way_round_never_shows_the_key() -> None:
    key = base64.b64encode(b"k" * 32).decode()
    for text in (f"{key}:k1", f"k1:{key},{key}:k2"):
        with pytest.raises(WebhookKeyError) as refused:
            WebhookSecretBox.parse(text)
        assert key not in str(refused.value) and key[:8] not in str(refused.value)

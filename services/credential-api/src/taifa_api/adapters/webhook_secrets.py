"""Webhook signing secrets: generated here, stored AES-256-GCM encrypted under a key ring from settings.

A webhook secret must be *used* (the dispatcher signs every delivery with it, HMAC-SHA256 per Standard Webhooks),
so it cannot be stored as a hash as SMTP passwords and API keys are: it is encrypted at rest instead.

- Key ring: `TAIFA_WEBHOOK_SECRET_KEYS` = "id:base64key[,id:base64key...]", each key 32 bytes (AES-256). The first
  key encrypts; every key decrypts, so keys rotate by putting a new one first and keeping the old ones until
  every row has been re-encrypted (a secret rotation re-encrypts with the first key) or deleted.
- Ciphertext layout (bytes): `v1:` + key id + `:` + 12-byte random nonce + AES-GCM ciphertext and tag. The
  associated data is the endpoint id, so a ciphertext copied into another endpoint's row does not decrypt.
- Errors (`WebhookKeyError`) name key ids, never keys or secrets.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from typing import Final
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the prefix, not a secret
SECRET_BYTES: Final = 32
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
_VERSION: Final = b"v1:"
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class WebhookKeyError(ValueError):
    """The key ring is unusable, or a ciphertext cannot be decrypted with it. Never carries key material."""


def new_webhook_secret() -> str:
    """A new signing secret: `whsec_` + standard base64 of 32 random bytes (what `standardwebhooks` reads)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


class WebhookSecretBox:
    """Encrypts and decrypts webhook secrets with a key ring. Its repr shows key ids only."""

    __slots__ = ("_keys", "_primary")

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise WebhookKeyError("no webhook secret key is configured (TAIFA_WEBHOOK_SECRET_KEYS)")
        ring: dict[str, AESGCM] = {}
        for key_id, key in keys:
            if not _KEY_ID.fullmatch(key_id):
                # Never echoed: an entry written key:id the wrong way round would put the key here.
                raise WebhookKeyError(f"webhook secret key id number {len(ring) + 1} is not 1-64 of [A-Za-z0-9._-]")
            if key_id in ring:
                raise WebhookKeyError(f"webhook secret key id {key_id!r} appears twice")
            if len(key) != KEY_BYTES:
                raise WebhookKeyError(
                    f"webhook secret key {key_id!r} is not {KEY_BYTES} bytes"
                    " (generate one with `openssl rand -base64 32`)"
                )
            ring[key_id] = AESGCM(key)
        self._keys = ring
        self._primary = keys[0][0]

    @classmethod
    def parse(cls, text: str) -> WebhookSecretBox:
        """From the setting's form "id:base64key,id:base64key"; the first key encrypts."""
        keys: list[tuple[str, bytes]] = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            key_id, sep, encoded = item.partition(":")
            if not sep:
                raise WebhookKeyError("each TAIFA_WEBHOOK_SECRET_KEYS entry must be id:base64key")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                shown = repr(key_id.strip()) if _KEY_ID.fullmatch(key_id.strip()) else f"number {len(keys) + 1}"
                raise WebhookKeyError(f"webhook secret key {shown} is not valid base64") from None
            keys.append((key_id.strip(), key))
        return cls(keys)

    @property
    def primary_key_id(self) -> str:
        return self._primary

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def __repr__(self) -> str:
        return f"WebhookSecretBox(primary={self._primary!r}, keys={list(self._keys)!r})"

    def new_secret(self) -> str:
        """A new signing secret (`new_webhook_secret`), for the use cases' SecretIssuer port."""
        return new_webhook_secret()

    def encrypt(self, secret: str, webhook_id: UUID) -> bytes:
        """The stored form of `secret` for endpoint `webhook_id`, under the primary key."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._keys[self._primary].encrypt(nonce, secret.encode("utf-8"), webhook_id.bytes)
        return _VERSION + self._primary.encode("ascii") + b":" + nonce + sealed

    def decrypt(self, ciphertext: bytes, webhook_id: UUID) -> str:
        """The secret stored for `webhook_id`; WebhookKeyError when the key is unknown or the data was altered."""
        key_id = self.key_id_of(ciphertext)
        body = bytes(ciphertext)[len(_VERSION) + len(key_id) + 1 :]
        if len(body) <= NONCE_BYTES:
            raise WebhookKeyError("webhook secret ciphertext is truncated")
        try:
            plain = self._keys[key_id].decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], webhook_id.bytes)
        except InvalidTag:
            raise WebhookKeyError(
                f"webhook secret does not decrypt with key {key_id!r} (altered, or stored for another endpoint)"
            ) from None
        return plain.decode("utf-8")

    def key_id_of(self, ciphertext: bytes) -> str:
        """The id of the key a ciphertext was made with; WebhookKeyError if that key is not in the ring."""
        data = bytes(ciphertext)
        if not data.startswith(_VERSION):
            raise WebhookKeyError("webhook secret ciphertext has an unknown format")
        key_id, sep, _ = data[len(_VERSION) :].partition(b":")
        text = key_id.decode("ascii", "replace")
        if not sep or not _KEY_ID.fullmatch(text):
            raise WebhookKeyError("webhook secret ciphertext has an unknown format")
        if text not in self._keys:
            raise WebhookKeyError(f"webhook secret was encrypted with key {text!r}, which is not configured")
        return text

    def needs_reencryption(self, ciphertext: bytes) -> bool:
        """True when the ciphertext was made with a key other than the primary one."""
        return self.key_id_of(ciphertext) != self._primary


def generate_key_ring_entry(key_id: str = "k1") -> str:
    """A fresh "id:base64key" entry for dev/test stacks (never committed)."""
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode('ascii')}"

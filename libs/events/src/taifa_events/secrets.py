"""SMTP password format and secret ids (docs/api.md, "Secrets that scanners can find").

New passwords are `tmsmtp_` + 43 base62 characters drawn from `secrets` (62^43 ≈ 2^256.03: at least 256 bits)
+ 6 base62 characters of CRC32 over those 43 characters. The prefix and checksum let secret scanners find a
leaked password without false positives (`SMTP_PASSWORD_PATTERN`), and let the relay refuse a mistyped or
truncated password before any lookup (`smtp_password_checksum_ok`). Passwords made before this format
(URL-safe base64, no prefix) keep working: the check passes anything that does not claim the prefix.

Every secret of a credential has an id. The first secret's id is derived from the credential id
(`initial_secret_id`), so that events written before secrets had ids (CredentialCreated v2), v1 cache
entries and a rebuild all name it the same way.
"""

from __future__ import annotations

import hashlib
import re
import secrets as _random
import zlib
from uuid import UUID

SMTP_PASSWORD_PREFIX = "tmsmtp_"  # noqa: S105  (the public prefix)
BASE62_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_LENGTH = 43
CHECKSUM_LENGTH = 6
# Published for secret scanners: docs/api.md gives it with a gitleaks rule (tests/unit/docs checks they agree).
SMTP_PASSWORD_PATTERN = r"^tmsmtp_[0-9A-Za-z]{43}[0-9A-Za-z]{6}$"  # noqa: S105  (a pattern)
_PASSWORD = re.compile(SMTP_PASSWORD_PATTERN)

# Namespace of derived secret ids (uuid5): never change it, stored and cached ids depend on it.
SECRET_ID_NAMESPACE = UUID("6b1d3c52-8f0e-5a7b-9c4d-2e1f0a9b8c7d")


_NAMESPACE_BYTES = SECRET_ID_NAMESPACE.bytes
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# uuid5's version (5) and variant (RFC 4122) bits, set as `uuid.UUID(bytes=..., version=5)` sets them.
_VERSION_VARIANT_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_VERSION_VARIANT_SET = (0x8000 << 48) | (5 << 76)


def initial_secret_id(credential_id: UUID | str) -> UUID:
    """The stable id of a credential's first secret for events and cache entries that carry none:
    `uuid5(SECRET_ID_NAMESPACE, f"{UUID(str(credential_id))}:initial")`, computed without uuid5's per-call
    import and property look-ups, and without parsing an id already in canonical form (a rebuild derives it
    for every older creation and every tombstone; tests/unit/events checks it against uuid5)."""
    text = str(credential_id)
    if type(credential_id) is not UUID and _CANONICAL_UUID.fullmatch(text) is None:
        text = str(UUID(text))  # any other form UUID() reads (upper case, braces, urn:uuid:), or its ValueError
    digest = hashlib.sha1(_NAMESPACE_BYTES + text.encode() + b":initial", usedforsecurity=False).digest()
    return UUID(int=int.from_bytes(digest[:16], "big") & _VERSION_VARIANT_CLEAR | _VERSION_VARIANT_SET)


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(BASE62_ALPHABET[rest])
    return "".join(reversed(digits)).rjust(width, "0")


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def new_smtp_password() -> str:
    """A new SMTP password in the `tmsmtp_` format (creation and rotation)."""
    body = "".join(_random.choice(BASE62_ALPHABET) for _ in range(BODY_LENGTH))
    return SMTP_PASSWORD_PREFIX + body + _checksum(body)


def smtp_password_checksum_ok(password: str) -> bool:
    """False only for a password that claims the `tmsmtp_` prefix but whose form or checksum is wrong (refused
    without a lookup); True for any other password, so passwords of the older format keep working."""
    if not password.startswith(SMTP_PASSWORD_PREFIX):
        return True
    if _PASSWORD.fullmatch(password) is None:
        return False
    body = password[len(SMTP_PASSWORD_PREFIX) : len(SMTP_PASSWORD_PREFIX) + BODY_LENGTH]
    return password[-CHECKSUM_LENGTH:] == _checksum(body)

"""API key format: `tm_` + 43 random base62 characters (256 bits) + a 6-character base62 CRC32 checksum.

The checksum lets a malformed or mistyped key be refused before any database or Redis lookup, and the
prefix lets secret scanners find leaked keys.
"""

from __future__ import annotations

import re
import secrets
import zlib
from typing import Final

PREFIX: Final = "tm_"
ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH: Final = 43  # 62**43 > 2**256
CHECKSUM_LENGTH: Final = 6  # 62**6 > 2**32
KEY_PATTERN: Final = re.compile(rf"^{PREFIX}[0-9A-Za-z]{{{RANDOM_LENGTH}}}[0-9A-Za-z]{{{CHECKSUM_LENGTH}}}$")


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        digits.append(ALPHABET[rest])
    return "".join(reversed(digits))


def checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode("ascii")), CHECKSUM_LENGTH)


def generate_api_key() -> str:
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return PREFIX + random_part + checksum(random_part)


def is_well_formed(candidate: str) -> bool:
    """Prefix, length, alphabet and checksum are right (says nothing about whether the key exists)."""
    if not KEY_PATTERN.match(candidate):
        return False
    body = candidate[len(PREFIX) :]
    return secrets.compare_digest(checksum(body[:RANDOM_LENGTH]), body[RANDOM_LENGTH:])

"""How SMTP passwords and API keys are hashed and compared.

The secrets are 256-bit random strings, so a fast hash is safe (docs/architecture.md, "Secrets"); the scheme name
travels with the hash so that a later scheme can be introduced without a flag day.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

HASH_SCHEME = "sha256"

# 264 random bits, URL-safe base64 (44 characters). Dropping the 1-in-64 draws that start with "-"
# (command-line clients such as swaks read such a value as an option) leaves > 263.9 bits: still >= 256.
SECRET_BYTES = 33
SECRET_HASH_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def hash_secret(secret: str) -> str:
    """Hex SHA-256 of the UTF-8 secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(secret: str, expected_hash: str, scheme: str = HASH_SCHEME) -> bool:
    """Constant-time check of `secret` against a stored hash; unknown schemes never match."""
    candidate = hash_secret(secret)
    if scheme != HASH_SCHEME:
        # Still compare, so an unknown scheme costs the same as a wrong password.
        hmac.compare_digest(candidate, candidate)
        return False
    return hmac.compare_digest(candidate.encode(), expected_hash.encode())


def new_secret() -> str:
    """A new SMTP password: random, URL-safe, at least 256 bits of entropy, never starting with "-"."""
    while True:
        secret = secrets.token_urlsafe(SECRET_BYTES)
        if not secret.startswith("-"):
            return secret

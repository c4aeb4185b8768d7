"""Authentication of `/v1` requests: API keys (`Authorization: Bearer tm_...`) and the `taifa_session` JWT cookie.

Every failure returns None, so the caller answers with one and the same 401 whatever went wrong.
"""

from __future__ import annotations

import hmac
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import asyncpg
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from taifa_events import hash_secret

from taifa_api import metrics
from taifa_api.adapters import write_side
from taifa_api.domain import api_keys
from taifa_api.settings import Settings

SESSION_COOKIE: Final = "taifa_session"
CSRF_COOKIE: Final = "taifa_csrf"
CSRF_HEADER: Final = "x-csrf-token"

HMAC_ALGORITHM: Final = "HS256"
# Each asymmetric algorithm accepts only keys of its own type: no algorithm confusion.
ASYMMETRIC_ALGORITHMS: Final[dict[str, type[Any]]] = {
    "RS256": rsa.RSAPublicKey,
    "ES256": ec.EllipticCurvePublicKey,
    "EdDSA": ed25519.Ed25519PublicKey,
}
_PEM_BLOCK: Final = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account, the rate-limit subject, and whether a cookie carried the session."""

    account_id: UUID
    subject: str
    via_cookie: bool


def load_public_keys(setting: str | None) -> list[Any]:
    """Public keys from PEM text, or from the file the setting names (e.g. a mounted Kubernetes secret)."""
    if not setting:
        return []
    pem_text = setting if "-----BEGIN" in setting else Path(setting).read_text()
    return [load_pem_public_key(block.encode()) for block in _PEM_BLOCK.findall(pem_text)]


class Authenticator:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._secret = settings.api_jwt_secret.get_secret_value() if settings.api_jwt_secret else None
        self._public_keys = load_public_keys(settings.api_jwt_public_keys)
        self._issuer = settings.api_jwt_issuer
        self._audience = settings.api_jwt_audience
        self._leeway = settings.api_jwt_leeway_seconds

    async def authenticate(self, authorization: str | None, session_cookie: str | None) -> Principal | None:
        """An Authorization header wins over the cookie; an invalid header never falls back to the cookie."""
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer":
                return None
            return await self._api_key(token.strip())
        if session_cookie:
            return await self._session(session_cookie)
        return None

    async def _api_key(self, key: str) -> Principal | None:
        if not api_keys.is_well_formed(key):
            return None  # refused before any lookup
        metrics.API_KEY_LOOKUPS.inc()
        key_hash = hash_secret(key)
        record = await write_side.find_api_key_by_hash(self._pool, key_hash)
        if record is None or record.revoked_at is not None:
            return None
        if not hmac.compare_digest(record.key_hash.encode(), key_hash.encode()):
            return None
        return Principal(account_id=record.account_id, subject=f"key:{record.key_id}", via_cookie=False)

    def _keys_for(self, algorithm: str) -> list[Any]:
        if algorithm == HMAC_ALGORITHM:
            return [self._secret] if self._secret else []
        key_type = ASYMMETRIC_ALGORITHMS.get(algorithm)
        if key_type is None:
            return []
        return [key for key in self._public_keys if isinstance(key, key_type)]

    def decode_session(self, token: str) -> dict[str, Any] | None:
        """Verified claims of a session JWT, or None."""
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            return None
        if not isinstance(algorithm, str):
            return None
        required = ["exp", "account_id"]
        if self._issuer:
            required.append("iss")
        if self._audience:
            required.append("aud")
        for key in self._keys_for(algorithm):
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=[algorithm],
                    audience=self._audience,
                    issuer=self._issuer,
                    leeway=self._leeway,
                    options={"require": required},
                )
                return claims
            except jwt.PyJWTError:
                continue
        return None

    async def _session(self, token: str) -> Principal | None:
        claims = self.decode_session(token)
        if claims is None:
            return None
        try:
            account_id = UUID(str(claims["account_id"]))
        except ValueError:
            return None
        if not await write_side.account_exists(self._pool, account_id):
            return None
        return Principal(account_id=account_id, subject=f"account:{account_id}", via_cookie=True)


def csrf_ok(cookie_value: str | None, header_value: str | None) -> bool:
    """Double submit: the header equals the cookie, both present and non-empty."""
    if not cookie_value or not header_value:
        return False
    return hmac.compare_digest(cookie_value.encode(), header_value.encode())

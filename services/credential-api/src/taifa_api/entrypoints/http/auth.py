"""Authentication of `/v1` requests: API keys (`Authorization: Bearer tm_...`) and the `taifa_session` JWT cookie.

Every failure returns None, so the caller answers with one and the same 401 whatever went wrong. A key
configuration that could never verify anything (no usable public key, a short HS256 secret) refuses to
start instead: a deployment that silently accepts no session is found at once, not by its users.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import asyncpg
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from taifa_events import Actor, hash_secret

from taifa_api import metrics
from taifa_api.adapters import sessions as revoked_sessions
from taifa_api.adapters import write_side
from taifa_api.domain import api_keys, sessions
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
MIN_RSA_BITS: Final = 2048
MAX_ACTOR_ID: Final = 200  # a longer `sub` is not recorded (the actor is then the account)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account, the rate-limit subject, and whether a cookie carried the session."""

    account_id: UUID
    subject: str
    via_cookie: bool
    # The session JWT's `sub` claim when it has a usable one (the audit feed's actor id for a session).
    session_subject: str | None = None

    def actor(self) -> Actor:
        """The audit actor: the API key's id, or the session's `sub` (else its account id)."""
        if not self.via_cookie:
            return Actor(type="api_key", id=self.subject.removeprefix("key:"))
        return Actor(type="session", id=self.session_subject or str(self.account_id))


class InvalidKeyConfiguration(ValueError):
    """TAIFA_API_JWT_PUBLIC_KEYS is set but unusable; the message says why (public keys only, never a secret)."""


def _unusable(key: Any) -> str | None:
    if isinstance(key, rsa.RSAPublicKey):
        return None if key.key_size >= MIN_RSA_BITS else f"an RSA key needs {MIN_RSA_BITS} bits or more"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return None if isinstance(key.curve, ec.SECP256R1) else "ES256 needs an EC key on P-256"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return None
    return "not an RSA, EC P-256 or Ed25519 key"


def load_public_keys(setting: str | None) -> list[Any]:
    """Public keys from PEM text, or from the file the setting names (e.g. a mounted Kubernetes secret).

    Unset gives no keys (RS256/ES256/EdDSA off). Set, it must hold at least one key and every key must be one
    an accepted algorithm can use; otherwise InvalidKeyConfiguration.
    """
    if not setting:
        return []
    if "-----BEGIN" in setting:
        pem_text = setting
    else:
        try:
            pem_text = Path(setting).read_text()
        except (OSError, ValueError) as exc:
            raise InvalidKeyConfiguration(
                f"TAIFA_API_JWT_PUBLIC_KEYS names a file that cannot be read ({type(exc).__name__})"
            ) from None
    blocks = _PEM_BLOCK.findall(pem_text)
    if not blocks:
        raise InvalidKeyConfiguration(
            "TAIFA_API_JWT_PUBLIC_KEYS holds no PEM `PUBLIC KEY` block (certificates and private keys are not read)"
        )
    keys = []
    for number, block in enumerate(blocks, start=1):
        try:
            key = load_pem_public_key(block.encode())
        except (ValueError, TypeError):
            raise InvalidKeyConfiguration(
                f"public key {number} of TAIFA_API_JWT_PUBLIC_KEYS cannot be parsed"
            ) from None
        reason = _unusable(key)
        if reason:
            raise InvalidKeyConfiguration(f"public key {number} of TAIFA_API_JWT_PUBLIC_KEYS: {reason}")
        keys.append(key)
    return keys


class Authenticator:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._secret = settings.api_jwt_secret.get_secret_value() if settings.api_jwt_secret else None
        self._public_keys = load_public_keys(settings.api_jwt_public_keys)
        self._issuer = settings.api_jwt_issuer
        self._audience = settings.api_jwt_audience
        self._leeway = settings.api_jwt_leeway_seconds
        self._max_lifetime = settings.api_jwt_max_lifetime_seconds
        self._require_jti = settings.api_jwt_require_jti

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
            except jwt.PyJWTError:
                continue
            if not sessions.lifetime_ok(claims, time.time(), self._max_lifetime):
                return None
            if not sessions.jti_acceptable(claims, self._require_jti):
                return None
            return claims
        return None

    async def _session(self, token: str) -> Principal | None:
        claims = self.decode_session(token)
        if claims is None:
            return None
        try:
            account_id = UUID(str(claims["account_id"]))
        except ValueError:
            return None
        if not await revoked_sessions.session_usable(self._pool, account_id, claims.get("jti")):
            return None  # unknown account, or this token's jti revoked (`taifa-admin session revoke`)
        sub = claims.get("sub")
        usable_sub = sub if isinstance(sub, str) and 0 < len(sub) <= MAX_ACTOR_ID and sub.isprintable() else None
        return Principal(
            account_id=account_id, subject=f"account:{account_id}", via_cookie=True, session_subject=usable_sub
        )


def csrf_ok(cookie_value: str | None, header_value: str | None) -> bool:
    """Double submit: the header equals the cookie, both present and non-empty."""
    if not cookie_value or not header_value:
        return False
    return hmac.compare_digest(cookie_value.encode(), header_value.encode())

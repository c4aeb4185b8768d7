"""Session JWTs this service mints itself: `taifa-admin session create` (a `taifa_session` cookie value for an
operator or a script) and the development sign-in link of the console (a one-time token, refused as a session).

Production sessions are minted by the platform's sign-in; these use the same HS256 secret and the same claims
that the API checks (auth.py), so a token minted here is accepted exactly as one of the platform's would be.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import jwt

from taifa_api.settings import Settings

ALGORITHM: Final = "HS256"
# The audience of a sign-in token: a session check (no audience, or the configured one) refuses it, and it carries
# no `account_id` claim, so it can never be used as the `taifa_session` cookie itself.
SIGN_IN_AUDIENCE: Final = "taifa-console-sign-in"
DEFAULT_SIGN_IN_TTL_SECONDS: Final = 8 * 3600


class NoSigningSecret(RuntimeError):
    """TAIFA_API_JWT_SECRET is unset: nothing can be signed here (RS256/EdDSA sessions come from the platform)."""


@dataclass(frozen=True)
class Minted:
    token: str
    jti: str
    expires_at: int  # unix seconds


def _secret(settings: Settings) -> str:
    if settings.api_jwt_secret is None:
        raise NoSigningSecret("TAIFA_API_JWT_SECRET is not set: no session can be signed with it")
    return settings.api_jwt_secret.get_secret_value()


def mint_session(settings: Settings, account_id: UUID, lifetime_seconds: int | None = None) -> Minted:
    """A session JWT for the account: `account_id`, `iat`, `exp` (at most the accepted lifetime), a `jti` (so it
    can be revoked), and `iss`/`aud` when the API requires them."""
    now = int(time.time())
    longest = settings.api_jwt_max_lifetime_seconds
    lifetime = min(lifetime_seconds or longest, longest)
    jti = str(uuid.uuid4())
    claims: dict[str, Any] = {"account_id": str(account_id), "iat": now, "exp": now + lifetime, "jti": jti}
    if settings.api_jwt_issuer:
        claims["iss"] = settings.api_jwt_issuer
    if settings.api_jwt_audience:
        claims["aud"] = settings.api_jwt_audience
    return Minted(jwt.encode(claims, _secret(settings), algorithm=ALGORITHM), jti, now + lifetime)


def mint_sign_in_token(settings: Settings, account_id: UUID, ttl_seconds: int = DEFAULT_SIGN_IN_TTL_SECONDS) -> Minted:
    """A one-time sign-in token for the development sign-in endpoint (its `jti` is spent on first use)."""
    now = int(time.time())
    jti = str(uuid.uuid4())
    claims = {"sub": str(account_id), "aud": SIGN_IN_AUDIENCE, "iat": now, "exp": now + ttl_seconds, "jti": jti}
    return Minted(jwt.encode(claims, _secret(settings), algorithm=ALGORITHM), jti, now + ttl_seconds)


@dataclass(frozen=True)
class SignIn:
    account_id: UUID
    jti: str
    expires_at: int


def read_sign_in_token(settings: Settings, token: str) -> SignIn | None:
    """The verified content of a sign-in token, or None (bad signature, expired, another kind of token)."""
    if settings.api_jwt_secret is None or len(token) > 2048:
        return None
    try:
        claims = jwt.decode(
            token,
            settings.api_jwt_secret.get_secret_value(),
            algorithms=[ALGORITHM],
            audience=SIGN_IN_AUDIENCE,
            options={"require": ["sub", "aud", "exp", "jti"]},
        )
        return SignIn(UUID(str(claims["sub"])), str(claims["jti"]), int(claims["exp"]))
    except (jwt.PyJWTError, ValueError, TypeError):
        return None

"""Rules of session JWTs that need no key and no I/O: the lifetime cap and the shape of `jti`.

A stolen session cookie is usable until its `exp`; an issuer that mints week-long tokens (by mistake or
by compromise) would make that a week. The API caps what it accepts, measured from `iat` when the token
has one (so the cap is a property of the token), else from now.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

MAX_JTI_LENGTH: Final = 255  # the revocation table's bound


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def lifetime_ok(claims: Mapping[str, Any], now: float, max_lifetime_seconds: int) -> bool:
    """`exp` lies at most `max_lifetime_seconds` after `iat` (after `now` without `iat`)."""
    expires = claims.get("exp")
    issued = claims.get("iat", now)
    if not _is_number(expires) or not _is_number(issued):
        return False
    return bool(expires - issued <= max_lifetime_seconds)


def jti_well_formed(jti: object) -> bool:
    """A `jti` the revocation table can hold: 1 to MAX_JTI_LENGTH printable characters."""
    return isinstance(jti, str) and 0 < len(jti) <= MAX_JTI_LENGTH and jti.isprintable()


def jti_acceptable(claims: Mapping[str, Any], required: bool) -> bool:
    """No `jti` is fine unless required; a present one must be one the revocation table can hold (a token whose
    `jti` could not be revoked, at sign-out or by an operator, is refused)."""
    if "jti" not in claims:
        return not required
    return jti_well_formed(claims["jti"])

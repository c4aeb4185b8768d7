"""Business errors of the command side, each with the contract's error code (docs/api.md)."""

from __future__ import annotations

from typing import ClassVar, Final

DOMAIN_NOT_VERIFIED: Final = "domain_not_verified"
UNAUTHORIZED: Final = "unauthorized"
CREDENTIAL_LIMIT_REACHED: Final = "credential_limit_reached"
CSRF_FAILED: Final = "csrf_failed"
NOT_FOUND: Final = "not_found"
CREDENTIAL_EXISTS: Final = "credential_exists"
DOMAIN_LIMIT_REACHED: Final = "domain_limit_reached"
DOMAIN_TAKEN: Final = "domain_taken"
DOMAIN_RELEASED: Final = "domain_released"
VALIDATION_ERROR: Final = "validation_error"
RATE_LIMITED: Final = "rate_limited"
PAYLOAD_TOO_LARGE: Final = "payload_too_large"
METHOD_NOT_ALLOWED: Final = "method_not_allowed"
UNAVAILABLE: Final = "unavailable"
INTERNAL_ERROR: Final = "internal_error"


class CommandRefused(Exception):
    """A command that the business rules refuse; `code` and `message` go to the client as they are."""

    code: ClassVar[str] = INTERNAL_ERROR
    message: ClassVar[str] = "The request was refused."

    def __init__(self) -> None:
        super().__init__(self.message)


class NotFound(CommandRefused):
    code = NOT_FOUND
    message = "Not found."


class DomainNotVerified(CommandRefused):
    code = DOMAIN_NOT_VERIFIED
    message = "The domain is not verified yet."


class CredentialExists(CommandRefused):
    code = CREDENTIAL_EXISTS
    message = "An active SMTP credential already exists for this domain."


class CredentialLimitReached(CommandRefused):
    code = CREDENTIAL_LIMIT_REACHED
    message = "The account's plan allows no more active SMTP credentials."


class DomainLimitReached(CommandRefused):
    code = DOMAIN_LIMIT_REACHED
    message = "The account has as many domains as it may have; delete one first."


class DomainTaken(CommandRefused):
    """Operator override refused: another account holds the verified name (one account at a time)."""

    code = DOMAIN_TAKEN
    message = "The domain name is verified by another account."


class DomainAlreadyReleased(CommandRefused):
    """Operator override refused: a released domain is never verified again (the account registers it anew)."""

    code = DOMAIN_RELEASED
    message = "The domain has been released."


class InvalidCursor(CommandRefused):
    code = VALIDATION_ERROR
    message = "cursor: not a cursor this list returned."


class InvalidDomainName(ValueError):
    """A domain name that cannot be normalised into a valid DNS name; the reason never echoes input."""

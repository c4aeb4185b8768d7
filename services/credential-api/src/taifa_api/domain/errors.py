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
CREDENTIAL_INACTIVE: Final = "credential_inactive"
ROTATION_IN_PROGRESS: Final = "rotation_in_progress"
LAST_SECRET: Final = "last_secret"  # noqa: S105 - an error code
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

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.message)
        self.detail: str = detail or self.message  # what the client reads: never an input value that may be secret


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


class CredentialInactive(CommandRefused):
    """Rotating, suspending, resuming or changing a deactivated credential (deactivation is for good)."""

    code = CREDENTIAL_INACTIVE
    message = "The credential is deactivated; it can no longer be changed."


class RotationInProgress(CommandRefused):
    """At most two valid secrets: the previous secret's grace period must end (or be ended) first."""

    code = ROTATION_IN_PROGRESS
    message = "A previous secret is still in its grace period; delete it or wait until it expires."


class LastSecret(CommandRefused):
    code = LAST_SECRET
    message = "The newest secret cannot be deleted; rotate the credential or delete the credential instead."


class InvalidRequest(CommandRefused):
    """A request the business rules find invalid (422), with a detail that names the field, never its value."""

    code = VALIDATION_ERROR
    message = "Invalid request."


class InvalidCursor(CommandRefused):
    code = VALIDATION_ERROR
    message = "cursor: not a cursor this list returned."


class InvalidDomainName(ValueError):
    """A domain name that cannot be normalised into a valid DNS name; the reason never echoes input."""

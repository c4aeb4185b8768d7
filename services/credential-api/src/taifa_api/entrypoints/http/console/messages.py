"""The one table that turns the contract's error codes into words a customer understands, and the fixed notices
shown after an action. A page never shows a raw error body; an unknown code gets the generic message."""

from __future__ import annotations

from typing import Final

from taifa_api.domain import errors as codes

GENERIC: Final = "Something went wrong on our side. Nothing was changed; please try again in a minute."

CUSTOMER_MESSAGES: Final[dict[str, str]] = {
    codes.DOMAIN_NOT_VERIFIED: "This domain is not verified yet. Add the TXT record shown below, then choose "
    "“Verify now”.",
    codes.UNAUTHORIZED: "You are not signed in, or your session has ended. Sign in again to continue.",
    codes.CREDENTIAL_LIMIT_REACHED: "Your plan allows no more active SMTP credentials. Deactivate one you no "
    "longer use, or upgrade your plan.",
    codes.CSRF_FAILED: "This form has expired or was not sent from this console, so nothing was changed. Reload "
    "the page and try again.",
    codes.NOT_FOUND: "We could not find that domain or credential in your account. It may have been released or "
    "deleted.",
    codes.CREDENTIAL_EXISTS: "This domain already has an SMTP credential. Rotate its password instead of "
    "creating another one.",
    codes.DOMAIN_LIMIT_REACHED: "Your account already holds as many domains as it may. Release one you no longer "
    "use first.",
    codes.DOMAIN_TAKEN: "Another account has already verified this domain name.",
    codes.DOMAIN_RELEASED: "This domain has been released. Add it again to use it.",
    codes.CREDENTIAL_INACTIVE: "This credential is deactivated; it can no longer be changed. Create a new one for "
    "the domain instead.",
    codes.ROTATION_IN_PROGRESS: "The previous password is still in its grace period. End the grace period now "
    "(below), or wait until it expires, then rotate again.",
    codes.LAST_SECRET: "The current password cannot be ended on its own. Rotate the credential, or deactivate it.",
    codes.VALIDATION_ERROR: "Some of what you entered is not valid; nothing was changed.",
    codes.RATE_LIMITED: "Too many requests in a short time. Wait a minute and try again.",
    codes.PAYLOAD_TOO_LARGE: "What you sent is too large.",
    codes.METHOD_NOT_ALLOWED: "This page cannot be used that way.",
    codes.UNAVAILABLE: "The service is briefly unavailable. Nothing was changed; please try again in a minute.",
    codes.INTERNAL_ERROR: GENERIC,
    "confirmation_mismatch": "The name you typed does not match the domain name, so nothing was changed.",
    "sign_in_link_invalid": "This sign-in link is not valid any more: it was already used or has expired. Ask for "
    "a new one.",
}

NOTICES: Final[dict[str, str]] = {
    "domain_added": "Domain added. Publish the TXT record, then choose “Verify now”.",
    "domain_verified": "The domain is verified. You can create its SMTP credential.",
    "domain_pending": "The TXT record was not found yet. DNS changes can take a while; try again later.",
    "domain_released": "The domain was released and its SMTP credentials deactivated.",
    "suspended": "The credential is suspended: logins still work, messages are deferred (451) until you resume it.",
    "resumed": "The credential is active again; clients deliver what they queued.",
    "restrictions_saved": "Restrictions saved. The relay enforces them from now on.",
    "deactivated": "The credential is deactivated. The relay refuses it from now on, live sessions included.",
    "secret_ended": "The previous password is refused from now on.",
    "password_hidden": "The password is no longer shown and cannot be shown again. If it was lost, rotate the "
    "credential to get a new one.",
    "signed_out": "You are signed out.",
}


def customer_message(code: str) -> str:
    return CUSTOMER_MESSAGES.get(code, GENERIC)

"""What the relay's application decides for a command: `Accepted`, `Refused`, `Close` or `LoggedOut`, each with the
reply to write and what the protocol counts (metrics); the protocol acts on it (`entrypoints.smtp_protocol`)."""

from __future__ import annotations

from dataclasses import dataclass

from taifa_relay.application.ports import CacheStale, CacheUnavailable, WriteRefused
from taifa_relay.domain import replies


@dataclass(frozen=True, slots=True)
class Accepted:
    """Answer `reply`; the command succeeded. `outcomes` name what the protocol counts (metrics)."""

    reply: str
    outcomes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Refused:
    """Answer `reply`; the session goes on."""

    reply: str
    outcomes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Close:
    """Answer `reply`, then close the connection."""

    reply: str
    outcomes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LoggedOut:
    """The session's credential was revoked: its login and its transaction are gone; answer `reply`."""

    reply: str
    outcomes: tuple[str, ...] = ()


Decision = Accepted | Refused | Close | LoggedOut

# The frequent decisions, built once.
AUTH_ACCEPTED = Accepted(replies.AUTH_SUCCESS, ("success",))
AUTH_REFUSED = Refused(replies.AUTH_INVALID, ("failure",))
AUTH_CLOSED = Close(replies.AUTH_TOO_MANY_FAILURES, ("failure",))
AUTH_THROTTLED = Close(replies.AUTH_TOO_MANY_FAILURES, ("throttled",))
SENDER_ACCEPTED = Accepted(replies.SENDER_OK)
RECIPIENT_ACCEPTED = Accepted(replies.RECIPIENT_OK)
REVOKED = LoggedOut(replies.CREDENTIAL_REVOKED, ("revoked-in-session",))
RECHECK_UNAVAILABLE = Refused(replies.AUTH_TEMPORARY_FAILURE)
END_OF_DATA_RECHECK_UNAVAILABLE = Refused(replies.RECHECK_UNAVAILABLE, ("end-of-data-recheck-unavailable",))
LIMITS_UNAVAILABLE = Refused(replies.LIMITS_UNAVAILABLE, ("limits-unavailable",))


def unavailable_outcome(exc: CacheUnavailable) -> str:
    if isinstance(exc, WriteRefused):
        return "write-refused"
    return "cache-stale" if isinstance(exc, CacheStale) else "unavailable"

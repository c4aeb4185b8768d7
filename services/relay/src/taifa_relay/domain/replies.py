"""Every SMTP reply the relay sends on its own behalf (docs/api.md, SMTP reference), as named constants, and the
few reply choices that depend on a value (the queue id, the upstream's answer)."""

from __future__ import annotations

from typing import Final

STARTTLS_FIRST: Final = "530 5.7.0 Must issue a STARTTLS command first"
AUTH_REQUIRED: Final = "530 5.7.0 Authentication required"
AUTH_SUCCESS: Final = "235 2.7.0 Authentication successful"
AUTH_INVALID: Final = "535 5.7.8 Authentication credentials invalid"
CREDENTIAL_REVOKED: Final = "535 5.7.8 Authentication credentials no longer valid"
# MAIL (and the end of DATA) of a session whose credential is suspended: AUTH still succeeds, the client keeps
# its messages and retries; resuming the credential lets them through.
CREDENTIAL_SUSPENDED: Final = "451 4.7.1 Credential suspended, try again later"
# Sending limits (docs/api.md, "Usage and sending limits"): per minute at MAIL, per day and the plan's quota at RCPT
# (each recipient counts one); counters that cannot be read are a temporary refusal, never an unlimited send.
RATE_LIMITED: Final = "451 4.7.1 Sending rate limit reached, try again later"
DAILY_LIMIT_REACHED: Final = "452 4.7.1 Daily sending limit of the credential reached, try again tomorrow"
QUOTA_REACHED: Final = "452 4.7.1 Daily quota of the account reached, try again tomorrow"
LIMITS_UNAVAILABLE: Final = "451 4.3.0 Sending limits temporarily unavailable, try again later"
AUTH_TEMPORARY_FAILURE: Final = "454 4.7.0 Temporary authentication failure"
AUTH_TOO_MANY_FAILURES: Final = "454 4.7.0 Too many authentication failures, closing connection"
# End of DATA: the credential could not be re-checked (Redis unreachable or its cache not trusted); nothing sent.
RECHECK_UNAVAILABLE: Final = "451 4.3.0 Temporary authentication failure, try again later"
SENDER_NOT_ALLOWED: Final = "553 5.7.1 Sender address rejected: not owned by user"
NULL_SENDER_NOT_ALLOWED: Final = "553 5.7.1 Null sender not allowed for submission"
HEADER_FROM_NOT_ALLOWED: Final = "550 5.7.1 From: header rejected: not owned by user"
HEADER_FROM_MISSING: Final = "550 5.7.1 Message must have exactly one From: header with one address"
HEADER_SENDER_NOT_ALLOWED: Final = "550 5.7.1 Sender: header rejected: one mailbox owned by user required"
SENDER_CHECK_UNAVAILABLE: Final = "451 4.3.0 Sender check temporarily unavailable, try again later"
MESSAGE_TOO_BIG: Final = "552 5.3.4 Message size exceeds fixed maximum message size"
TOO_MANY_RECIPIENTS: Final = "452 4.5.3 Too many recipients"
AUTH_ABORTED: Final = "501 5.7.0 Auth aborted"
# Refusals of recipients the client cannot foresee (the recipient cap, the daily limits): RFC 5321 §4.5.3.1.10 has
# it send the rest in another transaction, so they are not the client's errors (the error limits count the others;
# a message of 120 recipients was cut with 421 and nothing sent).
NOT_CLIENT_ERRORS: Final = frozenset({TOO_MANY_RECIPIENTS, DAILY_LIMIT_REACHED, QUOTA_REACHED})
BARE_NEWLINE: Final = "550 5.6.0 Bare CR or LF not allowed in message data"
LINE_TOO_LONG: Final = "500 5.5.2 Line too long"
MAIL_LOOP: Final = "550 5.4.6 Mail loop detected"
UPSTREAM_UNAVAILABLE: Final = "451 4.4.1 Upstream temporarily unavailable, try again later"
UPSTREAM_TEMPORARY: Final = "451 4.4.0 Upstream temporarily failed, try again later"
QUEUED: Final = "250 2.0.0 OK: message accepted"
TOO_MANY_CONNECTIONS: Final = "421 4.7.0 Too many connections from your address, slow down"
TOO_MANY_SESSIONS: Final = "421 4.7.0 Too many concurrent connections from your address"
SERVER_BUSY: Final = "421 4.7.0 Server busy, too many connections, try again later"
IDLE_TIMEOUT: Final = "421 4.4.2 Idle timeout, closing connection"
DATA_TOO_SLOW: Final = "421 4.4.2 Data rate too slow, closing connection"
TOO_MANY_ERRORS: Final = "421 4.7.0 Too many errors, closing connection"
SHUTTING_DOWN: Final = "421 4.3.2 Service shutting down, try again later"
FORBIDDEN_COMMAND: Final = "521 5.7.0 Not an SMTP client, closing connection"
INTERNAL_ERROR: Final = "451 4.3.0 Internal error, try again later"
SYNTAX_ERROR: Final = "500 5.5.2 Error: bad syntax"
BAD_BASE64: Final = "501 5.5.2 Can't decode base64"
BAD_AUTH_VALUE: Final = "501 5.5.2 Can't split auth value"
NOT_SECURED: Final = "554 5.7.0 Command refused due to lack of security"
STARTTLS_SYNTAX: Final = "501 5.5.4 Syntax: STARTTLS"
READY_FOR_TLS: Final = "220 2.0.0 Ready to start TLS"
SENDER_OK: Final = "250 2.1.0 OK"
RECIPIENT_OK: Final = "250 2.1.5 OK"
RECIPIENT_MALFORMED: Final = "553 5.1.3 Recipient address rejected: malformed"
UNRECOGNISED_COMMAND: Final = "500 5.5.1 Error: command not recognized"
TLS_NOT_AVAILABLE: Final = "454 4.7.0 TLS not available"
DATA_START: Final = "354 End data with <CR><LF>.<CR><LF>"
NEED_RCPT: Final = "503 5.5.1 Error: need RCPT command"
DATA_SYNTAX: Final = "501 5.5.4 Syntax: DATA"

# Replies aiosmtpd produces itself, mapped to the contract's texts and enhanced status codes.
REWRITES: Final[dict[str, str]] = {
    "530 Must issue a STARTTLS command first": STARTTLS_FIRST,
    "552 Error: message size exceeds fixed maximum message size": MESSAGE_TOO_BIG,
    "500 Command line too long": LINE_TOO_LONG,
    "454 TLS not available": TLS_NOT_AVAILABLE,
    "503 Already authenticated": "503 5.5.1 Already authenticated",
}

# Commands that show the peer is not an SMTP client (Postfix smtpd_forbidden_commands).
FORBIDDEN_COMMANDS: Final = frozenset({"CONNECT", "GET", "POST", "PUT", "HEAD", "USER", "PASS"})


def queued(queue_id: str) -> str:
    """The end-of-DATA reply for a message the upstream accepted, with the id its log line carries."""
    return f"{QUEUED} {queue_id}"


def upstream_failure_reply(code: int, text: str) -> str:
    """Upstream unreachable or 4xx → our 451 4.4.x (the client retries); 5xx → passed through."""
    if code == 0:
        return UPSTREAM_UNAVAILABLE
    if 500 <= code < 600:
        clean = " ".join(text.replace("\r", " ").replace("\n", " ").split())[:200]
        return f"{code} {clean}" if clean else f"{code} 5.0.0 Rejected by upstream"
    return UPSTREAM_TEMPORARY

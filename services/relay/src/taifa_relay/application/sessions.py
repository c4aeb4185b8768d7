"""The relay's open sessions: admission and release, the logins by username, the fan-out of revocations and
"credential changed" notices, and the drain.

One `SessionRegistry` per process. A connection is any hashable object the protocol registers (the registry never
writes to it); what the application knows of a session is its `SessionState`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Hashable
from typing import Generic, TypeVar

from taifa_events.auth_cache import AuthCacheEntry, CredentialChange, Revocation, parse_notice
from taifa_events.events import CredentialLimits

from taifa_relay.domain import policy, replies
from taifa_relay.domain.credentials import Login
from taifa_relay.domain.limits import Admission, AdmissionLimits

log = logging.getLogger("taifa.relay.session")

Connection = TypeVar("Connection", bound=Hashable)

_REFUSAL_LOG = {
    replies.TOO_MANY_CONNECTIONS: "connection rate cap reached",
    replies.SERVER_BUSY: "global session cap reached",
    replies.TOO_MANY_SESSIONS: "session cap reached",
}


class SessionState:
    """What the relay knows of one SMTP session: its client and, once AUTH succeeded, its login.

    A new state starts after STARTTLS (RFC 3207 §4.2); only the client carries over (`for_same_client`)."""

    __slots__ = (
        "account_id",
        "auth_failures",
        "checked",
        "client_group",
        "client_ip",
        "credential_id",
        "daily_refusal",
        "domain",
        "limits",
        "login",
        "mail_deferred",
        "plan",
        "recheck",
        "revoked",
        "username",
    )

    def __init__(self, client_ip: str = "", client_group: str = "") -> None:
        self.client_ip = client_ip
        # `policy.address_group(client_ip)`: what every per-client limit counts (set once, at admission).
        self.client_group = client_group or (policy.address_group(client_ip) if client_ip else "")
        self.username: str | None = None
        self.credential_id: str | None = None
        # The credential and secret id the session authenticated with, and when they expire: the re-checks
        # require that secret still valid (domain.credentials.session_verdict).
        self.login: Login | None = None
        self.domain: str | None = None
        self.account_id: str | None = None
        # The credential's sending limits and the account's plan, as last read (AUTH or a re-check).
        self.limits: CredentialLimits | None = None
        self.plan: str | None = None
        self.revoked = False
        # Re-read the entry before the next command (RCPT and the start of DATA too): set by a "credential changed"
        # notice for this credential, by a (re)subscription of the channel, and while the credential is suspended.
        self.recheck = False
        # The entry this session was last judged valid on (at AUTH or a re-read; None after any other verdict): MAIL
        # re-reads and counts in one round trip while Redis still holds exactly it (Submission.mail_from).
        self.checked: AuthCacheEntry | None = None
        # MAIL's re-check waits for aiosmtpd to accept the command, to be done with its count (before_mail).
        self.mail_deferred = False
        self.auth_failures = 0
        # The transaction's daily-limit refusal, once a recipient got one: its further recipients get the same
        # reply without asking Redis again while the day and the limits it was made under hold (reset at each MAIL):
        # (reply, usage reason, (UTC day, messages_per_day, quota)), `Submission.rcpt_to`.
        self.daily_refusal: tuple[str, str, tuple[str, int | None, int]] | None = None

    @property
    def logged_in(self) -> bool:
        return self.username is not None

    def for_same_client(self) -> SessionState:
        return SessionState(self.client_ip, self.client_group)


class RecentChecks:
    """Per-transaction re-reads of a credential's entry that other sessions of the same username may reuse for
    `seconds` (TAIFA_RELAY_RECHECK_CACHE_SECONDS; 0: never). Each session still applies the rules to the entry
    itself (its own secret, address and clock). Revocations and resubscriptions clear it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        # username -> (the entry read, monotonic time until which it may be reused)
        self._checks: dict[str, tuple[AuthCacheEntry, float]] = {}
        # Raised by every forget/clear: a read that started before one (`generation` then) is not remembered, so a
        # read in flight when a notice arrived cannot put the entry from before the change back.
        self.generation = 0

    def __contains__(self, username: object) -> bool:
        return username in self._checks

    def fresh(self, state: SessionState) -> AuthCacheEntry | None:
        """A reusable recent read of this session's entry, or None."""
        if self.seconds <= 0 or state.username is None:
            return None
        recent = self._checks.get(state.username)
        if recent is None:
            return None
        if recent[1] > time.monotonic():
            return recent[0]
        del self._checks[state.username]
        return None

    def remember(self, state: SessionState, entry: AuthCacheEntry, since: int | None = None) -> None:
        """Keep `entry` for reuse, unless a forget/clear came after the read started (`since`: `generation` then)."""
        if since is not None and since != self.generation:
            return
        if self.seconds > 0 and state.username:
            self._checks[state.username] = (entry, time.monotonic() + self.seconds)

    def forget(self, username: str) -> None:
        self.generation += 1
        self._checks.pop(username, None)

    def clear(self) -> None:
        self.generation += 1
        self._checks.clear()


class SessionRegistry(Generic[Connection]):
    """Admission caps, the open sessions, and the logins a revocation message reaches."""

    def __init__(self, limits: AdmissionLimits, recent_checks: RecentChecks) -> None:
        self.admission = Admission(limits, time.monotonic())
        self.recent_checks = recent_checks
        self.sessions: set[Connection] = set()
        self.no_sessions = asyncio.Event()
        self.no_sessions.set()
        self._groups: dict[Connection, str] = {}
        self._by_username: dict[str, set[SessionState]] = defaultdict(set)
        self._closed = False

    # --- admission -----------------------------------------------------------------------------
    def admit(self, connection: Connection, state: SessionState) -> str | None:
        """Count the session against its client's address group and the process's cap; the refusal reply when
        over one (the caller closes the connection). Called before any TLS handshake, so that a handshake flood
        on the implicit-TLS port is counted too."""
        if self._closed:
            return replies.SHUTTING_DOWN
        group = state.client_group = policy.address_group(state.client_ip)
        refusal = self.admission.admit(group, time.monotonic())
        if refusal is not None:
            log.warning(_REFUSAL_LOG[refusal], extra={"client": group, "sessions": len(self.sessions)})
            return refusal
        self._groups[connection] = group
        self.sessions.add(connection)
        self.no_sessions.clear()
        return None

    def release(self, connection: Connection, state: SessionState) -> None:
        """The admitted session ended: uncount it and forget its login."""
        group = self._groups.pop(connection, None)
        if group is not None:
            self.admission.release(group)
        self.sessions.discard(connection)
        if not self.sessions:
            self.no_sessions.set()
        self.forget_login(state)

    # --- logins and revocations ----------------------------------------------------------------
    def logged_in(self, state: SessionState) -> None:
        if state.username:
            self._by_username[state.username].add(state)

    def forget_login(self, state: SessionState) -> None:
        """Take the session out of the username index (at the end of the session, on re-AUTH, on revocation)."""
        if state.username:
            logins = self._by_username.get(state.username)
            if logins is not None:
                logins.discard(state)
                if not logins:
                    del self._by_username[state.username]

    def on_channel_message(self, message: str | bytes) -> None:
        """A message on the revocation channel: a revocation or a "credential changed" notice."""
        notice = parse_notice(message)
        if notice is None:
            log.warning("unreadable revocation message ignored")
        elif isinstance(notice, Revocation):
            self._revoke(notice)
        else:
            self._changed(notice)

    def _revoke(self, revocation: Revocation) -> None:
        """Sessions of that credential (every session of the username for the old plain-username form) are refused
        from now on; a newer credential with the same username keeps its sessions."""
        self.recent_checks.forget(revocation.username)
        for state in self._sessions_of(revocation.username, revocation.credential_id):
            state.revoked = True

    def _changed(self, change: CredentialChange) -> None:
        """The credential changed (rotation, a secret revoked, suspension, resume, restrictions): its sessions re-read
        the entry before their next command, RCPT and DATA included (`Submission.before_rcpt_or_data`)."""
        self.recent_checks.forget(change.username)
        for state in self._sessions_of(change.username, change.credential_id):
            state.recheck = True

    def _sessions_of(self, username: str, credential_id: str | None) -> list[SessionState]:
        wanted = credential_id.lower() if credential_id is not None else None
        return [
            state
            for state in self._by_username.get(username, ())
            if wanted is None or (state.credential_id or "").lower() == wanted
        ]

    def forget_rechecks(self) -> None:
        """Messages may have been missed (the revocation channel was lost or resubscribed, or the cache was rebuilt
        under a new epoch), so every logged-in session re-reads its entry before its next command and the reuse
        cache is emptied."""
        self.recent_checks.clear()
        for logins in self._by_username.values():
            for state in logins:
                state.recheck = True

    # --- shutdown ------------------------------------------------------------------------------
    def close_admission(self) -> None:
        """The relay is stopping: no session is admitted any more (`421 4.3.2`), including connections accepted
        before the listeners closed that were still reading their PROXY header."""
        self._closed = True

    async def drain(self, grace_seconds: float) -> list[Connection]:
        """Wait up to `grace_seconds` for the open sessions to end; the ones still open (the caller closes them)."""
        if self.sessions:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.no_sessions.wait(), grace_seconds)
        return list(self.sessions)

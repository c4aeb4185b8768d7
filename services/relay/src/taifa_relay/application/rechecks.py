"""The credential re-checks of a logged-in session: revocation, retired secret, expiry, suspension, at MAIL (with the
per-minute count in one round trip where the cache allows), RCPT, the start of DATA and the end of DATA. A base of
`taifa_relay.application.submission.Submission`, split from it to keep each module short; the rules themselves are
in `taifa_relay.domain.credentials`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from taifa_events.auth_cache import AuthCacheEntry

from taifa_relay.application.decisions import (
    END_OF_DATA_RECHECK_UNAVAILABLE,
    RECHECK_UNAVAILABLE,
    REVOKED,
    SENDER_ACCEPTED,
    Decision,
    Refused,
)
from taifa_relay.application.ports import AuthCacheReader, CacheUnavailable, MailRecheck, UsageRecorder
from taifa_relay.application.sessions import RecentChecks, SessionRegistry, SessionState
from taifa_relay.domain import credentials, policy, replies
from taifa_relay.domain.credentials import SessionVerdict

log = logging.getLogger("taifa.relay.session")


def keep_limits(state: SessionState, entry: AuthCacheEntry) -> None:
    """The session's limits and plan as `entry` states them now (an entry without a plan: the fallback plan)."""
    state.limits = entry.limits
    state.plan = entry.plan


class SessionChecks:
    """The re-checks of every session of a process; `Submission` sets these attributes."""

    auth_cache: AuthCacheReader
    mail_recheck: MailRecheck | None
    sessions: SessionRegistry[Any]
    recent_checks: RecentChecks
    usage: UsageRecorder
    clock: Callable[[], float]

    # --- revocation, retirement, expiry, suspension ---------------------------------------------
    def revoked(self, state: SessionState) -> Decision | None:
        """Without any read: LoggedOut when a revocation message reached this session's credential, or when its
        secret or credential has expired by the relay's clock (the expiries as last read, at AUTH or at a
        re-check); else None."""
        if not state.logged_in:
            return None
        if not state.revoked and state.login is not None and credentials.expired_by_clock(state.login, self.clock()):
            state.revoked = True
        return self._log_out(state) if state.revoked else None

    async def before_rcpt_or_data(self, state: SessionState) -> Decision | None:
        """RCPT and the start of DATA. Unmarked, nothing is read (no Redis command): `revoked`. A session marked by
        a "credential changed" notice (or by a resubscription of the channel) re-reads its entry once, with the
        judgement of MAIL: retired secret, expiry, allowlist or deactivation log it out (535), suspension is
        451 4.7.1. The re-read comes before the clock-only check: the change may have lifted or moved the expiry
        the session last read (a PATCH of `expires_at`), and an open transaction must not be logged out at the old
        one. None: go on."""
        if state.logged_in and state.recheck and not state.revoked:
            try:
                verdict = self._verdict(state, await self._reread(state))
            except CacheUnavailable:
                return RECHECK_UNAVAILABLE
            refusal = self._unless_valid(state, verdict)
            if refusal is not None:
                return refusal
        return self.revoked(state)

    async def _reread(self, state: SessionState) -> AuthCacheEntry | None:
        """One re-read of the session's entry. The mark is cleared before the read, so a notice that arrives while
        it is in flight marks the session again; a failed read leaves it marked."""
        state.recheck = False
        try:
            return await self.auth_cache.reread(state.username or "")
        except CacheUnavailable:
            state.recheck = True
            raise

    async def before_mail(self, state: SessionState, mail_arg: str | None) -> Decision | None:
        """MAIL of a logged-in session, before aiosmtpd parses it: a revoked session is logged out, else the credential
        is re-read (`_mail_recheck`) and the null sender refused. None: go on. With a per-minute limit to count, a
        session judged valid on an entry defers its re-read to `mail_from` (after aiosmtpd accepted the command),
        where the re-read and the count can be one round trip (`_mail_in_one_trip`)."""
        state.mail_deferred = False
        if not state.logged_in:
            return None
        if policy.has_source_route(mail_arg):
            revoked = self.revoked(state)
            return revoked if revoked is not None else self._refused(state, replies.SENDER_NOT_ALLOWED, "policy")
        if (
            self.mail_recheck is not None
            and state.checked is not None
            and not state.revoked
            and not state.recheck
            and state.limits is not None
            and state.limits.messages_per_minute is not None
            and not policy.is_null_sender(mail_arg)
        ):
            state.mail_deferred = True
            return None
        refusal = await self._mail_recheck(state)
        if refusal is not None:
            return refusal
        if policy.is_null_sender(mail_arg):
            return self._refused(state, replies.NULL_SENDER_NOT_ALLOWED, "policy")  # a sender rule, as a foreign one
        return None

    async def _mail_recheck(self, state: SessionState) -> Decision | None:
        """The credential re-read from the cache (or, unless the session is marked for a re-read, another session's
        recent re-check of the same credential reused) and judged. None: go on."""
        verdict = SessionVerdict.RETIRED
        if not state.revoked:
            entry = None if state.recheck else self.recent_checks.fresh(state)
            try:
                if entry is None:
                    since = self.recent_checks.generation
                    entry = await self._reread(state)
                    if entry is not None:
                        self.recent_checks.remember(state, entry, since)
            except CacheUnavailable:
                return RECHECK_UNAVAILABLE
            verdict = self._verdict(state, entry)
        return self._unless_valid(state, verdict)

    async def _mail_in_one_trip(self, state: SessionState, address: str) -> Decision | None:
        """MAIL's deferred re-check, once aiosmtpd has accepted the command. When the sender needs no other read and
        the rules still accept the entry the session was judged on (at this clock), one script re-reads it and, if
        Redis still holds exactly that entry, counts the minute: the decision then. Otherwise (or when that entry
        changed, judged here as any re-read) None once the re-check passed: the sender checks and the count follow
        as without the script. Nothing is counted for a refused MAIL."""
        judged, login, limits = state.checked, state.login, state.limits
        per_minute = limits.messages_per_minute if limits is not None else None
        domain = state.domain or ""
        if (
            self.mail_recheck is None
            or judged is None
            or login is None
            or per_minute is None
            or state.username is None
            or state.credential_id is None
            or state.revoked
            or state.recheck
            or not policy.sender_allowed(address, domain)
            or policy.owner_lookup_names(policy.address_domain(address) or "", domain)
            or credentials.session_verdict(judged, login, state.client_ip, self.clock()) is not SessionVerdict.VALID
        ):
            return await self._mail_recheck(state)
        try:
            taken = await self.mail_recheck.recheck_and_take_minute(
                state.username, judged, state.credential_id, per_minute, self.clock()
            )
        except CacheUnavailable:
            state.recheck = True  # as a failed re-read: the next command re-reads
            return RECHECK_UNAVAILABLE
        if taken is None:
            return await self._mail_recheck(state)
        if not taken.unchanged:
            return self._unless_valid(state, self._verdict(state, taken.entry))
        if taken.counted:
            return SENDER_ACCEPTED
        log.info("per-minute limit reached", extra={"credential_id": state.credential_id})
        return self._refused(state, replies.RATE_LIMITED, "limits")

    def _unless_valid(self, state: SessionState, verdict: SessionVerdict) -> Decision | None:
        if verdict is SessionVerdict.RETIRED:
            return self._log_out(state)
        return self._suspended(state) if verdict is SessionVerdict.SUSPENDED else None

    def _verdict(self, state: SessionState, entry: AuthCacheEntry | None) -> SessionVerdict:
        """The rules on a fresh read of the entry (domain.credentials.session_verdict); a retired session is
        marked revoked, a valid or suspended one keeps the expiries the entry states now. A suspended one stays
        marked for a re-read, so every command of it is refused until a re-read finds it resumed."""
        login = state.login
        if login is None:
            verdict = SessionVerdict.RETIRED
        else:
            verdict = credentials.session_verdict(entry, login, state.client_ip, self.clock())
        if verdict is SessionVerdict.RETIRED:
            state.revoked = True
        if verdict is SessionVerdict.SUSPENDED:
            state.recheck = True
        if verdict is not SessionVerdict.RETIRED and entry is not None and login is not None:
            state.login = credentials.refreshed(entry, login)
            keep_limits(state, entry)
        state.checked = entry if verdict is SessionVerdict.VALID else None
        return verdict

    def _refused(self, state: SessionState, reply: str, reason: str) -> Refused:
        """A refusal of a logged-in session, counted in its credential's usage (refused:<reason>) and, through the
        decision's outcome, in taifa_relay_refusals_total{reason}."""
        if state.credential_id is not None and state.account_id is not None:
            self.usage.refused(state.credential_id, state.account_id, reason, self.clock())
        return Refused(reply, (f"refused:{reason}",))

    def _suspended(self, state: SessionState) -> Decision:
        return self._refused(state, replies.CREDENTIAL_SUSPENDED, "suspended")

    def _log_out(self, state: SessionState) -> Decision:
        self.sessions.forget_login(state)
        state.username = state.credential_id = state.domain = None
        state.login = state.checked = None
        return REVOKED

    async def _end_of_data_check(self, state: SessionState) -> Decision | None:
        """Right before the upstream send, re-read the entry once more (one MULTI, never the reuse cache): a
        revocation whose channel message was lost (published while the relay resubscribed), a secret retired
        or a credential suspended while the message was being sent still stops it (suspended: 451 4.7.1, the
        client keeps the message and retries). None when the session may send; else the decision, and nothing
        is sent."""
        verdict = SessionVerdict.RETIRED
        if not state.revoked and state.username:
            try:
                verdict = self._verdict(state, await self._reread(state))
            except CacheUnavailable:
                return END_OF_DATA_RECHECK_UNAVAILABLE
        return self._unless_valid(state, verdict)

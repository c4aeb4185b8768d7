"""The relay's submission decisions: AUTH against the cache, the credential re-checks of a logged-in session
(revocation, retired secret, expiry, suspension), sender and message checks, forwarding. Every method returns a
decision (`Accepted`, `Refused`, `Close`, `LoggedOut`) and never touches a transport: the SMTP protocol writes the
reply and acts on it, as aiosmtpd's own hooks return a status.

The rules themselves are pure functions in `taifa_relay.domain`; Redis and the upstream are reached through the
ports in `taifa_relay.application.ports`.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from taifa_events import usage
from taifa_events.auth_cache import AuthCacheEntry

from taifa_relay.application.decisions import (
    AUTH_ACCEPTED,
    AUTH_CLOSED,
    AUTH_REFUSED,
    AUTH_THROTTLED,
    LIMITS_UNAVAILABLE,
    RECIPIENT_ACCEPTED,
    SENDER_ACCEPTED,
    Accepted,
    Close,
    Decision,
    LoggedOut,
    Refused,
    unavailable_outcome,
)
from taifa_relay.application.ports import (
    AuthCacheReader,
    CacheUnavailable,
    DomainOwnerLookup,
    MailRecheck,
    SendingLimits,
    Upstream,
    UsageRecorder,
)
from taifa_relay.application.rechecks import SessionChecks, keep_limits
from taifa_relay.application.sessions import SessionRegistry, SessionState
from taifa_relay.domain import credentials, policy, replies
from taifa_relay.domain.limits import AuthFailureLimits

__all__ = ["Accepted", "Close", "Decision", "LoggedOut", "Refused", "Submission"]

log = logging.getLogger("taifa.relay.session")

# Usernames whose logins this process refuses from its in-memory throttle marks, with their credential and account
# (learnt by the lookup that reached the limit), so those refusals count as `refused:throttled`. Bounded: emptied
# when full (a forgotten one only goes uncounted until its username reaches a limit here again).
THROTTLED_OWNERS_MAX = 10_000


class Submission(SessionChecks):
    """One per process: the decisions of every session, over the ports it is given."""

    def __init__(
        self,
        *,
        auth_cache: AuthCacheReader,
        domain_owners: DomainOwnerLookup,
        upstream: Upstream,
        sessions: SessionRegistry[Any],
        hostname: str,
        max_recipients: int,
        auth_limits: AuthFailureLimits,
        max_own_received_headers: int,
        sending: SendingLimits,
        usage_recorder: UsageRecorder,
        plan_quotas: dict[str, int] | None = None,
        clock: Callable[[], float] = time.time,
        mail_recheck: MailRecheck | None = None,
    ) -> None:
        self.auth_cache = auth_cache
        # MAIL's re-read and per-minute count in one round trip (None: a re-read, then the count).
        self.mail_recheck = mail_recheck
        self.domain_owners = domain_owners
        self.upstream = upstream
        self.sessions = sessions
        self.recent_checks = sessions.recent_checks
        self.hostname = hostname
        self.max_recipients = max_recipients
        self.auth_limits = auth_limits
        self.max_own_received = max_own_received_headers
        self.sending = sending
        self.usage = usage_recorder
        self.plan_quotas = dict(plan_quotas or usage.PLAN_DAILY_QUOTAS)
        self._throttled_owners: dict[str, tuple[str, str]] = {}
        # Unix seconds: secret and credential expiries are compared with the relay's own clock (no event ends
        # a grace period).
        self.clock = clock

    # --- AUTH ----------------------------------------------------------------------------------
    async def authenticate(self, state: SessionState, login: bytes, password: bytes, authzid: bytes = b"") -> Decision:
        """AUTH PLAIN/LOGIN: accepted (the session is logged in), refused (535), or closed (454) when a failure
        count is at its limit; a temporary 454 when the cache cannot answer or a failure cannot be counted.
        `authzid`: AUTH PLAIN's authorization identity; empty or the username itself, else refused like a wrong
        password (nobody may act as another user)."""
        username = login.decode("utf-8", "replace").strip().lower()
        requested = authzid.decode("utf-8", "replace").strip().lower()
        secret = password.decode("utf-8", "replace")
        group = state.client_group
        if self.auth_cache.is_throttled(group, username):
            owner = self._throttled_owners.get(username)
            if owner is not None:  # buffered: no round trip, as for an unknown username
                self.usage.refused(*owner, "throttled", self.clock())
            return self._throttled(state)
        if not credentials.password_well_formed(secret):
            return self._malformed(state)
        try:
            found = await self.auth_cache.lookup(username, group)
        except CacheUnavailable as exc:
            return self._unavailable(state, exc)
        over_username, over_address = self.auth_limits.over(found.failures_for_username, found.failures_for_address)
        if over_username or over_address:
            self.auth_cache.mark_throttled(group, username, username_too=over_username, address=over_address)
            owner = self._throttled_owner(username, found.entry)
            if owner is not None:
                self.usage.refused(*owner, "throttled", self.clock())
            return self._throttled(state)
        entry = found.entry
        judged = credentials.attempt(
            entry, secret, state.client_ip, self.clock(), as_another=bool(requested) and requested != username
        )
        opened = credentials.login_of(judged)
        if opened is not None and entry is not None:
            self.sessions.forget_login(state)  # a re-AUTH on this connection (after a revocation dropped the login)
            state.username = username
            state.credential_id = str(entry.credential_id)
            state.login = opened  # the secret id and expiries, for the re-checks
            state.domain = entry.domain.lower()
            state.account_id = str(entry.account_id)
            keep_limits(state, entry)
            state.checked = entry  # judged valid now: MAIL's script compares it
            state.revoked = False
            self.sessions.logged_in(state)
            self.usage.auth_succeeded(
                state.credential_id, state.account_id, str(opened.secret_id), state.client_ip, self.clock()
            )
            # debug: the relay writes one info line per message ("relayed", with the client and credential), not
            # one more per login (issue 18); failed logins stay info.
            log.debug("AUTH success", extra={"client": state.client_ip, "credential_id": state.credential_id})
            return AUTH_ACCEPTED
        decision = await self._failed(state, username, entry)
        # After the failure count's round trip, so that the usage rides on a later one; the reason is read from the
        # attempt's marks, worked out alike for every case (A11: same reply, similar timing). An unknown username
        # counts nowhere: there is no credential.
        reason = credentials.failure_reason(judged)
        if entry is not None:
            self.usage.auth_failed(str(entry.credential_id), str(entry.account_id), reason, self.clock())
        return decision

    def _throttled_owner(self, username: str, entry: AuthCacheEntry | None) -> tuple[str, str] | None:
        """(credential id, account id) of a username just throttled, remembered for the logins the marks refuse (an
        unknown username forgets what was remembered: it counts nowhere)."""
        if entry is None:
            self._throttled_owners.pop(username, None)
            return None
        if len(self._throttled_owners) >= THROTTLED_OWNERS_MAX:
            self._throttled_owners.clear()
        owner = self._throttled_owners[username] = (str(entry.credential_id), str(entry.account_id))
        return owner

    async def _failed(self, state: SessionState, username: str, entry: AuthCacheEntry | None) -> Decision:
        state.auth_failures += 1
        group = state.client_group
        try:
            for_username, for_address = await self.auth_cache.record_failure(group, username)
        except CacheUnavailable as exc:
            # Failing closed: a failure that cannot be counted gets no verdict (throttling never silently stops).
            unavailable = self._unavailable(state, exc)
            return Refused(unavailable.reply, ("failure", *unavailable.outcomes))
        over_username, over_address = self.auth_limits.over(for_username, for_address)
        if over_username or over_address:
            self.auth_cache.mark_throttled(group, username, username_too=over_username, address=over_address)
            self._throttled_owner(username, entry)
        log.info("AUTH failure", extra={"client": state.client_ip, "failures": state.auth_failures})
        if self.auth_limits.closes_connection(
            state.auth_failures, over_username=over_username, over_address=over_address
        ):
            return AUTH_CLOSED
        return AUTH_REFUSED

    def _malformed(self, state: SessionState) -> Decision:
        """A `tmsmtp_` password whose checksum is wrong: 535 without any Redis command. It counts toward this
        connection's failure limit but not in the shared counters: it tests no secret (anyone can compute the
        checksum, so a guesser never sends a wrong one), and a client with a truncated password must not lock
        its username out of the address it shares with other applications."""
        state.auth_failures += 1
        log.info("AUTH failure: malformed password", extra={"client": state.client_ip, "failures": state.auth_failures})
        if self.auth_limits.closes_connection(state.auth_failures, over_username=False, over_address=False):
            return AUTH_CLOSED
        return AUTH_REFUSED

    def _throttled(self, state: SessionState) -> Decision:
        log.warning("AUTH throttled", extra={"client": state.client_ip})
        return AUTH_THROTTLED

    def _unavailable(self, state: SessionState, exc: CacheUnavailable) -> Refused:
        log.warning("AUTH answered 454: auth cache unavailable", extra={"client": state.client_ip})
        return Refused(replies.AUTH_TEMPORARY_FAILURE, (unavailable_outcome(exc),))

    # --- envelope ------------------------------------------------------------------------------
    async def mail_from(self, state: SessionState, address: str) -> Decision:
        """The envelope sender (parsed by aiosmtpd): the credential's domain or a subdomain that no other
        account has verified; then the per-minute count. The re-check `before_mail` deferred comes first."""
        state.daily_refusal = None
        if state.mail_deferred:
            state.mail_deferred = False
            decided = await self._mail_in_one_trip(state, address)
            if decided is not None:
                return decided
        domain = state.domain or ""
        if not policy.sender_allowed(address, domain):
            return self._refused(state, replies.SENDER_NOT_ALLOWED, "policy")
        names = policy.owner_lookup_names(policy.address_domain(address) or "", domain)
        refusal = await self._subdomain_refusal(names, state, replies.SENDER_NOT_ALLOWED)
        if refusal is not None:
            if refusal == replies.SENDER_CHECK_UNAVAILABLE:
                return Refused(refusal)
            return self._refused(state, refusal, "policy")
        per_minute = state.limits.messages_per_minute if state.limits is not None else None
        if per_minute is not None and state.credential_id is not None:
            # Counted once the sender is accepted: a refused MAIL takes nothing from the minute.
            try:
                if not await self.sending.take_message(state.credential_id, per_minute, self.clock()):
                    log.info("per-minute limit reached", extra={"credential_id": state.credential_id})
                    return self._refused(state, replies.RATE_LIMITED, "limits")
            except CacheUnavailable:
                log.warning("per-minute limit could not be checked", extra={"client": state.client_ip})
                return LIMITS_UNAVAILABLE
        return SENDER_ACCEPTED

    async def rcpt_to(self, state: SessionState, recipients_so_far: int, address: str) -> Decision:
        """A recipient: the count and syntax caps, then one count against the credential's messages_per_day and
        the account plan's daily quota (one script for both; each recipient counts one)."""
        if recipients_so_far >= self.max_recipients:
            return self._refused(state, replies.TOO_MANY_RECIPIENTS, "policy")
        if policy.address_domain(address) is None:
            return Refused(replies.RECIPIENT_MALFORMED)
        if state.credential_id is None or state.account_id is None:
            return RECIPIENT_ACCEPTED  # not logged in: aiosmtpd refuses RCPT before MAIL anyway
        per_day = state.limits.messages_per_day if state.limits is not None else None
        quota = usage.daily_quota(state.plan, self.plan_quotas)
        now = self.clock()
        # What a daily refusal was made under: the UTC day and both limits (a PATCH can raise messages_per_day).
        basis = (usage.utc_day(now), per_day, quota)
        if state.daily_refusal is not None and state.daily_refusal[2] == basis:
            # A daily limit refused a recipient of this transaction: it holds for the rest of that day under those
            # limits, so the next ones get the same reply without a script call each (an over-quota client could
            # send RCPT forever). From 00:00 UTC, or with a limit changed, the next recipient is counted again.
            return self._refused(state, *state.daily_refusal[:2])
        try:
            taken = await self.sending.take_recipient(state.credential_id, state.account_id, per_day, quota, now)
        except CacheUnavailable:
            log.warning("daily limits could not be checked", extra={"client": state.client_ip})
            return LIMITS_UNAVAILABLE
        if taken.refused == "quota":
            log.info("plan daily quota reached", extra={"account_id": state.account_id})
            state.daily_refusal = (replies.QUOTA_REACHED, "quota", basis)
            return self._refused(state, replies.QUOTA_REACHED, "quota")
        if taken.refused is not None:
            log.info("per-day limit reached", extra={"credential_id": state.credential_id})
            state.daily_refusal = (replies.DAILY_LIMIT_REACHED, "limits", basis)
            return self._refused(state, replies.DAILY_LIMIT_REACHED, "limits")
        return RECIPIENT_ACCEPTED

    async def _subdomain_refusal(self, names: list[str], state: SessionState, refusal: str) -> str | None:
        """`refusal` when one of `names` (subdomains of the credential's domain) is another account's verified
        domain; a temporary reply when that cannot be read; None when allowed (no lookup when `names` is empty)."""
        if not names:
            return None
        try:
            owners = await self.domain_owners.owners(names)
        except CacheUnavailable:
            log.warning("domain owner lookup failed", extra={"client": state.client_ip})
            return replies.SENDER_CHECK_UNAVAILABLE
        if policy.owners_allow(owners, state.account_id):
            return None
        log.info("sender in another account's subdomain", extra={"credential_id": state.credential_id})
        return refusal

    # --- delivery ------------------------------------------------------------------------------
    def message_refused(self, state: SessionState, reply: str) -> str:
        """A message the protocol refused, at MAIL (SIZE= over the limit) or while reading it (too big, a bare CR
        or LF, a line too long): `reply`, counted in the credential's usage as refused:policy like the other policy
        refusals."""
        self._refused(state, reply, "policy")
        return reply

    async def deliver(
        self,
        state: SessionState,
        *,
        helo: str | None,
        tls_version: str | None,
        sender: str,
        recipients: list[str],
        message: bytes,
    ) -> Decision:
        """Check the message against the policy, re-check the credential, add our trace header and relay it."""
        headers = policy.header_block(message)
        fields = policy.header_fields(headers)  # read once, for both checks
        if policy.own_received_count(headers, self.hostname, fields) >= self.max_own_received:
            return self._refused(state, replies.MAIL_LOOP, "policy")
        identities = policy.check_header_identities(headers, state.domain or "", fields)
        if identities.refusal is not None:
            return self._refused(state, identities.refusal, "policy")
        refusal = await self._subdomain_refusal(identities.lookups, state, replies.HEADER_FROM_NOT_ALLOWED)
        if refusal is not None:
            if refusal == replies.SENDER_CHECK_UNAVAILABLE:
                return Refused(refusal)
            return self._refused(state, refusal, "policy")
        end_of_data = await self._end_of_data_check(state)
        if end_of_data is not None:
            return end_of_data
        queue_id = secrets.token_hex(8)
        trace = policy.received_header(
            helo=helo or "unknown",
            client_ip=state.client_ip,
            hostname=self.hostname,
            tls_version=tls_version,
            now=datetime.now(UTC),
            queue_id=queue_id,
        )
        started = time.perf_counter()
        result = await self.upstream.send(sender, recipients, trace + message)
        if not result.accepted:
            return self._refused(state, replies.upstream_failure_reply(result.code, result.text), "upstream")
        if state.credential_id is not None and state.account_id is not None and state.login is not None:
            self.usage.delivered(
                state.credential_id,
                state.account_id,
                str(state.login.secret_id),
                state.client_ip,
                len(recipients),
                len(message),
                self.clock(),
            )
        log.info(
            "relayed",
            extra={
                "queue_id": queue_id,
                "credential_id": state.credential_id,
                "client": state.client_ip,
                "bytes": len(message),
                "rcpts": len(recipients),
                "upstream_ms": round((time.perf_counter() - started) * 1e3, 2),
            },
        )
        return Accepted(replies.queued(queue_id))

"""The relay's session handler: AUTH against the cache, revocation, sender policy, limits and forwarding.

aiosmtpd calls the `handle_*` hooks; `RelaySMTP` calls `authenticate`, `still_authorised` and `deliver`.
Decisions come from `taifa_relay.domain.policy`; Redis and the upstream are reached through adapters.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import defaultdict
from datetime import UTC, datetime

from aiosmtpd.smtp import AuthResult, Envelope, Session
from taifa_events import secret_matches
from taifa_events.auth_cache import parse_revocation
from taifa_events.secret_hash import HASH_SCHEME

from taifa_relay.adapters import metrics
from taifa_relay.adapters.auth_cache import AuthCache, CacheStale, CacheUnavailable, WriteRefused
from taifa_relay.adapters.domain_owners import DomainOwners
from taifa_relay.adapters.upstream import UpstreamClient
from taifa_relay.domain import policy, replies
from taifa_relay.entrypoints.session_state import RelaySession, hook_names
from taifa_relay.entrypoints.smtp_protocol import RelaySMTP

log = logging.getLogger("taifa.relay.session")

# Compared against for unknown usernames, so that they cost the same hashing work as a wrong password.
_DUMMY_HASH = "0" * 64


class RelayHandler:
    def __init__(
        self,
        *,
        cache: AuthCache,
        upstream: UpstreamClient,
        domain_owners: DomainOwners,
        hostname: str,
        max_recipients: int,
        max_sessions: int,
        max_sessions_per_client: int,
        max_connections_per_minute: int,
        max_auth_failures_per_connection: int,
        max_auth_failures_per_address: int,
        max_own_received_headers: int,
        max_auth_failures_per_address_username: int = 10,
        recheck_cache_seconds: float = 0.0,
    ) -> None:
        self.cache = cache
        self.upstream = upstream
        self.domain_owners = domain_owners
        self.hostname = hostname
        self.max_recipients = max_recipients
        self.max_sessions = max_sessions
        self.max_sessions_per_client = max_sessions_per_client
        self.max_connections_per_minute = max_connections_per_minute
        self._rate_window_start = time.monotonic()
        self._connections_this_minute: dict[str, int] = defaultdict(int)
        self.max_failures_connection = max_auth_failures_per_connection
        self.max_failures_address = max_auth_failures_per_address
        self.max_failures_address_username = max_auth_failures_per_address_username
        self.max_own_received = max_own_received_headers
        self.recheck_cache_seconds = recheck_cache_seconds
        # username -> (credential_id, secret hash, monotonic time until which its last MAIL re-check may be reused)
        self._recent_checks: dict[str, tuple[str, str, float]] = {}
        self.sessions: set[RelaySMTP] = set()
        self.no_sessions = asyncio.Event()
        self.no_sessions.set()
        self._per_client: dict[str, int] = defaultdict(int)
        self._by_username: dict[str, set[RelaySMTP]] = defaultdict(set)

    def __dir__(self) -> list[str]:
        return hook_names(type(self), ("handle_", "auth_"))

    # --- sessions ------------------------------------------------------------------------------
    def admit(self, server: RelaySMTP) -> str | None:
        """Count the session against its client's address group (`policy.address_group`: an IPv6 /64 is one
        client) and against the relay's global cap; the refusal reply when the group opened too many connections
        in the current minute (Postfix anvil style fixed window), has too many sessions open, or the relay is
        full. Called before any TLS handshake, so a handshake flood on the implicit-TLS port is counted too."""
        ip = policy.address_group(server.relay_session.client_ip)
        now = time.monotonic()
        if now - self._rate_window_start >= 60:
            self._rate_window_start = now
            self._connections_this_minute.clear()
        if self._connections_this_minute[ip] >= self.max_connections_per_minute:
            log.warning("connection rate cap reached", extra={"client": ip})
            return replies.TOO_MANY_CONNECTIONS
        self._connections_this_minute[ip] += 1
        if len(self.sessions) >= self.max_sessions:
            log.warning("global session cap reached", extra={"client": ip, "sessions": len(self.sessions)})
            return replies.SERVER_BUSY
        if self._per_client[ip] >= self.max_sessions_per_client:
            log.warning("session cap reached", extra={"client": ip})
            return replies.TOO_MANY_SESSIONS
        self._per_client[ip] += 1
        self.sessions.add(server)
        self.no_sessions.clear()
        metrics.SESSIONS.inc()
        metrics.SESSIONS_TOTAL.labels(port="smtps" if server.implicit_tls else "submission").inc()
        return None

    def release(self, server: RelaySMTP) -> None:
        session = server.relay_session
        ip = policy.address_group(session.client_ip)
        self._per_client[ip] -= 1
        if self._per_client[ip] <= 0:
            del self._per_client[ip]
        self.sessions.discard(server)
        if not self.sessions:
            self.no_sessions.set()
        self._forget_login(server)
        metrics.SESSIONS.dec()

    def _forget_login(self, server: RelaySMTP) -> None:
        """Take the session out of the username index (at the end of the session, on re-AUTH, on revocation)."""
        username = server.relay_session.username
        if username:
            users = self._by_username.get(username)
            if users is not None:
                users.discard(server)
                if not users:
                    del self._by_username[username]

    def revoke(self, message: str | bytes) -> None:
        """A message on the revocation channel: sessions of that credential (every session of the username for
        the old plain-username form) are refused from now on; a newer credential with the same username keeps
        its sessions."""
        revocation = parse_revocation(message)
        if revocation is None:
            log.warning("unreadable revocation message ignored")
            return
        self._recent_checks.pop(revocation.username, None)
        revoked_id = revocation.credential_id.lower() if revocation.credential_id is not None else None
        for server in self._by_username.get(revocation.username, ()):
            session = server.relay_session
            if revoked_id is None or (session.credential_id or "").lower() == revoked_id:
                session.revoked = True

    def forget_rechecks(self) -> None:
        """The revocation channel was (re)subscribed: messages may have been missed, so re-read everything."""
        self._recent_checks.clear()

    # --- AUTH ----------------------------------------------------------------------------------
    async def authenticate(self, server: RelaySMTP, login: bytes, password: bytes) -> AuthResult:
        started = time.perf_counter()
        try:
            return await self._authenticate(server, login, password)
        finally:
            metrics.AUTH_SECONDS.observe(time.perf_counter() - started)

    async def _authenticate(self, server: RelaySMTP, login: bytes, password: bytes) -> AuthResult:
        session = server.relay_session
        username = login.decode("utf-8", "replace").strip().lower()
        secret = password.decode("utf-8", "replace")
        group = policy.address_group(session.client_ip)
        if self.cache.is_throttled(group, username):
            return await self._throttled(server)
        metrics.AUTH_LOOKUPS.inc()
        try:
            found = await self.cache.lookup(username, group)
        except CacheUnavailable as exc:
            return await self._unavailable(server, exc)
        if found.failures_for_username >= self.max_failures_address_username or (
            found.failures_for_address >= self.max_failures_address
        ):
            self.cache.mark_throttled(
                group,
                username,
                username_too=found.failures_for_username >= self.max_failures_address_username,
                address=found.failures_for_address >= self.max_failures_address,
            )
            return await self._throttled(server)
        entry = found.entry
        # Same work whatever the outcome: one SHA-256 and one constant-time comparison.
        if entry is None:
            secret_matches(secret, _DUMMY_HASH, HASH_SCHEME)
            ok = False
        else:
            ok = secret_matches(secret, entry.secret_hash, entry.hash_scheme) and entry.active
        if ok and entry is not None:
            metrics.AUTH_SUCCESS.inc()
            self._forget_login(server)  # a re-AUTH on this connection (after a revocation dropped the login)
            session.username = username
            session.credential_id = str(entry.credential_id)
            session.secret_hash = entry.secret_hash  # for the re-checks; never logged
            session.domain = entry.domain.lower()
            session.account_id = str(entry.account_id)
            session.revoked = False
            self._by_username[username].add(server)
            log.info("AUTH success", extra={"client": session.client_ip, "credential_id": session.credential_id})
            return AuthResult(success=True, auth_data=session.credential_id)
        metrics.AUTH_FAILURE.inc()
        session.auth_failures += 1
        try:
            for_username, for_address = await self.cache.record_failure(group, username)
        except CacheUnavailable as exc:
            # Failing closed: a failure that cannot be counted gets no verdict (throttling never silently stops).
            return await self._unavailable(server, exc)
        over_username = for_username >= self.max_failures_address_username
        over_address = for_address >= self.max_failures_address
        if over_username or over_address:
            self.cache.mark_throttled(group, username, username_too=over_username, address=over_address)
        log.info("AUTH failure", extra={"client": session.client_ip, "failures": session.auth_failures})
        if session.auth_failures >= self.max_failures_connection or over_username or over_address:
            await server.close_with(replies.AUTH_TOO_MANY_FAILURES)
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False)

    async def _throttled(self, server: RelaySMTP) -> AuthResult:
        metrics.AUTH_RESULTS.labels(result="throttled").inc()
        log.warning("AUTH throttled", extra={"client": server.relay_session.client_ip})
        await server.close_with(replies.AUTH_TOO_MANY_FAILURES)
        return AuthResult(success=False, handled=True)

    async def _unavailable(self, server: RelaySMTP, exc: CacheUnavailable) -> AuthResult:
        result = "cache-stale" if isinstance(exc, CacheStale) else "unavailable"
        if isinstance(exc, WriteRefused):
            result = "write-refused"
        metrics.AUTH_RESULTS.labels(result=result).inc()
        log.warning("AUTH answered 454: auth cache unavailable", extra={"client": server.relay_session.client_ip})
        await server.push(replies.AUTH_TEMPORARY_FAILURE)
        return AuthResult(success=False, handled=True)

    async def still_authorised(self, server: RelaySMTP, *, recheck: bool) -> bool:
        """False (after replying) when the session's credential was revoked; `recheck` re-reads the cache (or
        reuses another session's re-check of the same credential and secret, see recheck_cache_seconds)."""
        session = server.relay_session
        if not session.authenticated:
            return True
        if recheck and not session.revoked and not self._recently_checked(session):
            try:
                valid = await self._still_valid(session)
            except CacheUnavailable:
                await server.push(replies.AUTH_TEMPORARY_FAILURE)
                return False
            if valid and self.recheck_cache_seconds > 0 and session.username:
                self._recent_checks[session.username] = (
                    session.credential_id or "",
                    session.secret_hash or "",
                    time.monotonic() + self.recheck_cache_seconds,
                )
        if not session.revoked:
            return True
        await server.push(self._refuse_revoked(server))
        return False

    async def _still_valid(self, session: RelaySession) -> bool:
        """Read the entry (never the reuse cache): same credential, same secret, active, cache trusted. Marks the
        session revoked when not; raises CacheUnavailable when Redis cannot tell."""
        valid = bool(session.username) and await self.cache.still_valid(
            session.username or "", session.credential_id or "", session.secret_hash or ""
        )
        if not valid:
            session.revoked = True
        return valid

    def _refuse_revoked(self, server: RelaySMTP) -> str:
        self._drop_authentication(server, server.relay_session)
        metrics.AUTH_RESULTS.labels(result="revoked-in-session").inc()
        return replies.CREDENTIAL_REVOKED

    def _recently_checked(self, session: RelaySession) -> bool:
        if self.recheck_cache_seconds <= 0 or session.username is None:
            return False
        recent = self._recent_checks.get(session.username)
        if recent is None or recent[0] != session.credential_id or recent[1] != session.secret_hash:
            return False
        if recent[2] > time.monotonic():
            return True
        del self._recent_checks[session.username]
        return False

    def _drop_authentication(self, server: RelaySMTP, session: RelaySession) -> None:
        self._forget_login(server)
        session.authenticated = False
        session.auth_data = None
        session.username = session.credential_id = session.secret_hash = session.domain = None
        server._set_rset_state()  # type: ignore[no-untyped-call]

    # --- aiosmtpd hooks ------------------------------------------------------------------------
    async def handle_MAIL(
        self, server: RelaySMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        session = server.relay_session
        domain = session.domain or ""
        if not policy.sender_allowed(address, domain):
            return replies.SENDER_NOT_ALLOWED
        refusal = await self._subdomain_refusal(
            policy.owner_lookup_names(policy.address_domain(address) or "", domain),
            session,
            replies.SENDER_NOT_ALLOWED,
        )
        if refusal is not None:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def _subdomain_refusal(self, names: list[str], session: RelaySession, refusal: str) -> str | None:
        """`refusal` when one of `names` (subdomains of the credential's domain) is another account's verified
        domain; a temporary reply when that cannot be read; None when allowed (no lookup when `names` is empty)."""
        if not names:
            return None
        try:
            owners = await self.domain_owners.owners(names)
        except CacheUnavailable:
            log.warning("domain owner lookup failed", extra={"client": session.client_ip})
            return replies.SENDER_CHECK_UNAVAILABLE
        if policy.owners_allow(owners, session.account_id):
            return None
        log.info("sender in another account's subdomain", extra={"credential_id": session.credential_id})
        return refusal

    async def handle_RCPT(
        self, server: RelaySMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return replies.TOO_MANY_RECIPIENTS
        if policy.address_domain(address) is None:
            return "553 5.1.3 Recipient address rejected: malformed"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_exception(self, error: Exception) -> str:
        log.error("session error", exc_info=error)
        return replies.INTERNAL_ERROR

    # --- delivery ------------------------------------------------------------------------------
    async def deliver(self, server: RelaySMTP, message: bytes) -> str:
        """Check the message against the policy, add our trace header, and relay it; the reply for DATA."""
        session = server.relay_session
        envelope = server.envelope
        assert envelope is not None and envelope.mail_from is not None
        headers = policy.header_block(message)
        if policy.own_received_count(headers, self.hostname) >= self.max_own_received:
            return replies.MAIL_LOOP
        identities = policy.check_header_identities(headers, session.domain or "")
        if identities.refusal is not None:
            return identities.refusal
        refusal = await self._subdomain_refusal(identities.lookups, session, replies.HEADER_FROM_NOT_ALLOWED)
        if refusal is not None:
            return refusal
        refusal = await self._end_of_data_check(server)
        if refusal is not None:
            return refusal
        queue_id = secrets.token_hex(8)
        trace = policy.received_header(
            helo=session.host_name or "unknown",
            client_ip=session.client_ip,
            hostname=self.hostname,
            tls_version=server.tls_version(),
            now=datetime.now(UTC),
            queue_id=queue_id,
        )
        started = time.perf_counter()
        result = await self.upstream.send(envelope.mail_from, list(envelope.rcpt_tos), trace + message)
        if result.accepted:
            metrics.MESSAGES.inc()
            metrics.MESSAGE_BYTES.inc(len(message))
            log.info(
                "relayed",
                extra={
                    "queue_id": queue_id,
                    "credential_id": session.credential_id,
                    "bytes": len(message),
                    "rcpts": len(envelope.rcpt_tos),
                    "upstream_ms": round((time.perf_counter() - started) * 1e3, 2),
                },
            )
            return f"{replies.QUEUED} {queue_id}"
        return upstream_failure_reply(result.code, result.text)

    async def _end_of_data_check(self, server: RelaySMTP) -> str | None:
        """Right before the upstream send, re-read the entry once more (one MULTI, never the reuse cache): a
        revocation whose channel message was lost (published while the relay resubscribed) still stops the
        message. None when the session may send; else the reply, and nothing is sent."""
        session = server.relay_session
        if not session.revoked:
            try:
                await self._still_valid(session)
            except CacheUnavailable:
                metrics.REJECTIONS.labels(reason="end-of-data-recheck-unavailable").inc()
                return replies.RECHECK_UNAVAILABLE
        return self._refuse_revoked(server) if session.revoked else None


def upstream_failure_reply(code: int, text: str) -> str:
    """Upstream unreachable or 4xx → our 451 4.4.x (the client retries); 5xx → passed through."""
    if code == 0:
        return replies.UPSTREAM_UNAVAILABLE
    if 500 <= code < 600:
        clean = " ".join(text.replace("\r", " ").replace("\n", " ").split())[:200]
        return f"{code} {clean}" if clean else f"{code} 5.0.0 Rejected by upstream"
    return replies.UPSTREAM_TEMPORARY


__all__ = ["RelayHandler", "upstream_failure_reply"]

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
from taifa_events.secret_hash import HASH_SCHEME

from taifa_relay.adapters import metrics
from taifa_relay.adapters.auth_cache import AuthCache, CacheUnavailable
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
        hostname: str,
        max_recipients: int,
        max_sessions_per_client: int,
        max_connections_per_minute: int,
        max_auth_failures_per_connection: int,
        max_auth_failures_per_address: int,
        max_own_received_headers: int,
        recheck_cache_seconds: float = 0.0,
    ) -> None:
        self.cache = cache
        self.upstream = upstream
        self.hostname = hostname
        self.max_recipients = max_recipients
        self.max_sessions_per_client = max_sessions_per_client
        self.max_connections_per_minute = max_connections_per_minute
        self._rate_window_start = time.monotonic()
        self._connections_this_minute: dict[str, int] = defaultdict(int)
        self.max_failures_connection = max_auth_failures_per_connection
        self.max_failures_address = max_auth_failures_per_address
        self.max_own_received = max_own_received_headers
        self.recheck_cache_seconds = recheck_cache_seconds
        # username -> (credential_id, monotonic time until which its last re-check may be reused)
        self._recent_checks: dict[str, tuple[str, float]] = {}
        self.sessions: set[RelaySMTP] = set()
        self.no_sessions = asyncio.Event()
        self.no_sessions.set()
        self._per_client: dict[str, int] = defaultdict(int)
        self._by_username: dict[str, set[RelaySMTP]] = defaultdict(set)

    def __dir__(self) -> list[str]:
        return hook_names(type(self), ("handle_", "auth_"))

    # --- sessions ------------------------------------------------------------------------------
    def admit(self, server: RelaySMTP) -> str | None:
        """Count the session against its client address; the refusal reply when that address has too many
        sessions open, or opened too many in the current minute (Postfix anvil style fixed window)."""
        ip = server.relay_session.client_ip
        now = time.monotonic()
        if now - self._rate_window_start >= 60:
            self._rate_window_start = now
            self._connections_this_minute.clear()
        if self._connections_this_minute[ip] >= self.max_connections_per_minute:
            log.warning("connection rate cap reached", extra={"client": ip})
            return replies.TOO_MANY_CONNECTIONS
        self._connections_this_minute[ip] += 1
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
        ip = session.client_ip
        self._per_client[ip] -= 1
        if self._per_client[ip] <= 0:
            del self._per_client[ip]
        self.sessions.discard(server)
        if not self.sessions:
            self.no_sessions.set()
        if session.username:
            users = self._by_username.get(session.username)
            if users is not None:
                users.discard(server)
                if not users:
                    del self._by_username[session.username]
        metrics.SESSIONS.dec()

    def revoke(self, username: str) -> None:
        """A message on the revocation channel: sessions logged in as `username` are refused from now on."""
        self._recent_checks.pop(username.lower(), None)
        for server in self._by_username.get(username.lower(), ()):
            server.relay_session.revoked = True

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
        throttle_key = policy.throttle_key(session.client_ip)
        if self.cache.is_throttled(throttle_key):
            metrics.AUTH_RESULTS.labels(result="throttled").inc()
            log.warning("AUTH throttled for address", extra={"client": session.client_ip})
            await server.close_with(replies.AUTH_TOO_MANY_FAILURES)
            return AuthResult(success=False, handled=True)
        metrics.AUTH_LOOKUPS.inc()
        try:
            entry = await self.cache.entry(username)
        except CacheUnavailable:
            metrics.AUTH_RESULTS.labels(result="unavailable").inc()
            log.warning("auth cache unavailable", extra={"client": session.client_ip})
            await server.push(replies.AUTH_TEMPORARY_FAILURE)
            return AuthResult(success=False, handled=True)
        # Same work whatever the outcome: one SHA-256 and one constant-time comparison.
        if entry is None:
            secret_matches(secret, _DUMMY_HASH, HASH_SCHEME)
            ok = False
        else:
            ok = secret_matches(secret, entry.secret_hash, entry.hash_scheme) and entry.active
        if ok and entry is not None:
            metrics.AUTH_SUCCESS.inc()
            session.username = username
            session.credential_id = str(entry.credential_id)
            session.domain = entry.domain.lower()
            session.revoked = False
            self._by_username[username].add(server)
            log.info("AUTH success", extra={"client": session.client_ip, "credential_id": session.credential_id})
            return AuthResult(success=True, auth_data=session.credential_id)
        metrics.AUTH_FAILURE.inc()
        session.auth_failures += 1
        address_failures = await self.cache.record_failure(throttle_key)
        if address_failures >= self.max_failures_address:
            self.cache.mark_throttled(throttle_key)
        log.info("AUTH failure", extra={"client": session.client_ip, "failures": session.auth_failures})
        if session.auth_failures >= self.max_failures_connection or address_failures >= self.max_failures_address:
            await server.close_with(replies.AUTH_TOO_MANY_FAILURES)
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False)

    async def still_authorised(self, server: RelaySMTP, *, recheck: bool) -> bool:
        """False (after replying) when the session's credential was revoked; `recheck` re-reads the cache."""
        session = server.relay_session
        if not session.authenticated:
            return True
        if recheck and not session.revoked and session.username and not self._recently_checked(session):
            credential_id = session.credential_id or ""
            try:
                active = await self.cache.still_active(session.username, credential_id)
            except CacheUnavailable:
                await server.push(replies.AUTH_TEMPORARY_FAILURE)
                return False
            if not active:
                session.revoked = True
            elif self.recheck_cache_seconds > 0:
                self._recent_checks[session.username] = (credential_id, time.monotonic() + self.recheck_cache_seconds)
        if not session.revoked:
            return True
        self._drop_authentication(server, session)
        metrics.AUTH_RESULTS.labels(result="revoked-in-session").inc()
        await server.push(replies.CREDENTIAL_REVOKED)
        return False

    def _recently_checked(self, session: RelaySession) -> bool:
        if self.recheck_cache_seconds <= 0 or session.username is None:
            return False
        recent = self._recent_checks.get(session.username)
        if recent is None or recent[0] != session.credential_id:
            return False
        if recent[1] > time.monotonic():
            return True
        del self._recent_checks[session.username]
        return False

    def _drop_authentication(self, server: RelaySMTP, session: RelaySession) -> None:
        session.authenticated = False
        session.auth_data = None
        server._set_rset_state()  # type: ignore[no-untyped-call]

    # --- aiosmtpd hooks ------------------------------------------------------------------------
    async def handle_MAIL(
        self, server: RelaySMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        domain = server.relay_session.domain or ""
        if not policy.sender_allowed(address, domain):
            return replies.SENDER_NOT_ALLOWED
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

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
        from_ok = policy.header_from_allowed(headers, session.domain or "")
        if from_ok is None:
            return replies.HEADER_FROM_MISSING
        if not from_ok:
            return replies.HEADER_FROM_NOT_ALLOWED
        if session.revoked:
            self._drop_authentication(server, session)
            return replies.CREDENTIAL_REVOKED
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


def upstream_failure_reply(code: int, text: str) -> str:
    """Upstream unreachable or 4xx → our 451 4.4.x (the client retries); 5xx → passed through."""
    if code == 0:
        return replies.UPSTREAM_UNAVAILABLE
    if 500 <= code < 600:
        clean = " ".join(text.replace("\r", " ").replace("\n", " ").split())[:200]
        return f"{code} {clean}" if clean else f"{code} 5.0.0 Rejected by upstream"
    return replies.UPSTREAM_TEMPORARY


__all__ = ["RelayHandler", "upstream_failure_reply"]

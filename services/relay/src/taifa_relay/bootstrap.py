"""The one place that wires the relay: settings → its adapters and application parts, closed with one
`AsyncExitStack` (`RelayParts.aclose`, called by the relay's drain). `taifa-relay run` and the tests' relays
both start from `build_relay_parts` (through `Relay.from_settings`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from taifa_relay.adapters.auth_cache import RedisAuthCacheReader
from taifa_relay.adapters.domain_owners import DomainOwners
from taifa_relay.adapters.redis_connection import REDIS_TIMEOUT_SECONDS, relay_redis
from taifa_relay.adapters.redis_multiplex import MultiplexedRedis
from taifa_relay.adapters.revocation_listener import RevocationListener
from taifa_relay.adapters.sending_limits import RedisSendingLimits
from taifa_relay.adapters.tls import ReloadingContext
from taifa_relay.adapters.upstream import UpstreamClient
from taifa_relay.adapters.usage_buffer import NoUsage, UsageBuffer
from taifa_relay.application.sessions import RecentChecks, SessionRegistry
from taifa_relay.application.submission import Submission
from taifa_relay.domain.limits import AdmissionLimits, AuthFailureLimits
from taifa_relay.settings import Settings


@dataclass
class RelayParts:
    """Everything a relay process runs on besides its listeners; `aclose` closes the adapters."""

    settings: Settings
    tls: ReloadingContext
    auth_cache: RedisAuthCacheReader
    domain_owners: DomainOwners
    upstream: UpstreamClient
    sessions: SessionRegistry[Any]
    submission: Submission
    revocations: RevocationListener
    exit_stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def aclose(self) -> None:
        await self.exit_stack.aclose()


def build_relay_parts(settings: Settings) -> RelayParts:
    """Build every part from `settings` (no I/O but reading the certificate: clients connect on first use)."""
    stack = contextlib.AsyncExitStack()
    tls = ReloadingContext(settings.relay_tls_cert_file, settings.relay_tls_key_file)
    domain_owners = DomainOwners(settings.redis_url)
    stack.push_async_callback(domain_owners.close)
    usage_buffer = UsageBuffer(settings.redis_url) if settings.relay_usage_enabled else None
    if usage_buffer is not None:
        stack.push_async_callback(usage_buffer.close)  # after the reader's close (LIFO): the last counts are flushed
    # One connection for the per-message scripts of every session, shared by the auth cache and the sending limits
    # (adapters.redis_multiplex: the commands of one pass of the event loop go out in one write).
    scripts = MultiplexedRedis(
        relay_redis(settings.redis_url, timeout=REDIS_TIMEOUT_SECONDS), timeout=REDIS_TIMEOUT_SECONDS
    )
    auth_cache = RedisAuthCacheReader(
        settings.redis_url,
        failure_window_seconds=settings.relay_auth_failure_window_seconds,
        usage=usage_buffer,
        scripts=scripts,
    )
    stack.push_async_callback(auth_cache.close)
    sending = RedisSendingLimits(settings.redis_url, scripts=scripts)
    stack.push_async_callback(sending.close)
    upstream = UpstreamClient(
        settings.relay_upstream_host,
        settings.relay_upstream_port,
        local_hostname=settings.relay_hostname,
        tls_mode=settings.relay_upstream_tls,
        verify=settings.relay_upstream_verify,
        ca_file=settings.relay_upstream_ca_file,
        timeout=settings.relay_upstream_timeout_seconds,
        delivery_timeout=settings.relay_upstream_delivery_seconds,
        pool_size=settings.relay_upstream_pool_size,
    )
    stack.push_async_callback(upstream.close)
    sessions: SessionRegistry[Any] = SessionRegistry(
        AdmissionLimits(
            max_sessions=settings.relay_max_sessions,
            max_sessions_per_client=settings.relay_max_sessions_per_client,
            max_connections_per_minute=settings.relay_max_connections_per_minute,
        ),
        RecentChecks(settings.relay_recheck_cache_seconds),
    )
    auth_cache.on_epoch_change = sessions.forget_rechecks  # a rebuilt cache published no revocation
    submission = Submission(
        auth_cache=auth_cache,
        domain_owners=domain_owners,
        upstream=upstream,
        sessions=sessions,
        hostname=settings.relay_hostname,
        max_recipients=settings.relay_max_recipients,
        auth_limits=AuthFailureLimits(
            per_connection=settings.relay_max_auth_failures_per_connection,
            per_address_username=settings.relay_max_auth_failures_per_address_username,
            per_address=settings.relay_max_auth_failures_per_address,
        ),
        max_own_received_headers=settings.relay_max_own_received_headers,
        sending=sending,
        usage_recorder=usage_buffer if usage_buffer is not None else NoUsage(),
        plan_quotas=settings.plan_daily_quotas(),
        mail_recheck=auth_cache,
    )
    revocations = RevocationListener(settings.redis_url)
    return RelayParts(settings, tls, auth_cache, domain_owners, upstream, sessions, submission, revocations, stack)

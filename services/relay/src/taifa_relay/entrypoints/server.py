"""The relay's listeners: the parts from `taifa_relay.bootstrap` served on both SMTP ports, the revocation
listener, the certificate watcher and the health port; drains on SIGTERM.

`Relay` is what `taifa-relay run` starts and what the tests start in a thread of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from taifa_runtime.health import HealthServer
from taifa_runtime.lifecycle import sleep_unless_stopped, stop_on_signals

from taifa_relay.bootstrap import RelayParts, build_relay_parts
from taifa_relay.domain import replies
from taifa_relay.entrypoints.handler import RelayHandler
from taifa_relay.entrypoints.session_state import ProtocolLimits, trusted_networks
from taifa_relay.entrypoints.smtp_protocol import RelaySMTP
from taifa_relay.settings import Settings

log = logging.getLogger("taifa.relay")


def _quiet_aborted_handshakes(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """uvloop's `start_tls` leaves an internal future unretrieved when the peer resets during the handshake (the
    protocol has already handled the failure): routine for scanners and handshake floods, so not an error
    with a traceback per connection. Everything else goes to the default handler."""
    if context.get("message") == "Future exception was never retrieved" and isinstance(
        context.get("exception"), OSError
    ):
        log.debug("TLS handshake aborted by the peer", extra={"error": type(context["exception"]).__name__})
        return
    loop.default_exception_handler(context)


class Relay:
    """Both SMTP listeners, the revocation listener, the certificate watcher and the health port, over `parts`."""

    def __init__(self, parts: RelayParts, *, reuse_port: bool = False) -> None:
        self.parts = parts
        # SO_REUSEPORT on the SMTP listeners: several worker processes share them (`taifa-relay run --workers N`).
        self.reuse_port = reuse_port
        settings = self.settings = parts.settings
        self.handler = RelayHandler(parts.submission)
        self.limits = ProtocolLimits(
            hostname=settings.relay_hostname,
            max_message_bytes=settings.relay_max_message_bytes,
            max_line_length=settings.relay_max_line_length,
            max_command_length=settings.relay_max_command_length,
            idle_timeout=settings.relay_idle_timeout_seconds,
            min_data_rate=settings.relay_min_data_rate,
            data_rate_grace=settings.relay_data_rate_grace_seconds,
            error_soft_limit=settings.relay_error_soft_limit,
            error_hard_limit=settings.relay_error_hard_limit,
            error_delay=settings.relay_error_delay_seconds,
            proxy_timeout=settings.relay_proxy_protocol_timeout_seconds if settings.relay_proxy_protocol else None,
            proxy_trusted=trusted_networks(settings.relay_proxy_trusted_cidrs),
        )
        self._ready = False
        self._draining = False
        self.health = HealthServer(settings.relay_bind_host, settings.relay_health_port, self._report_ready)
        self._servers: list[asyncio.Server] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.submission_port = settings.relay_submission_port
        self.smtps_port = settings.relay_smtps_port

    @classmethod
    def from_settings(cls, settings: Settings, *, reuse_port: bool = False) -> Relay:
        """A relay over parts freshly built from `settings` (`taifa_relay.bootstrap`)."""
        return cls(build_relay_parts(settings), reuse_port=reuse_port)

    def _factory(self, implicit_tls: bool) -> RelaySMTP:
        return RelaySMTP(
            self.handler,
            sessions=self.parts.sessions,
            limits=self.limits,
            tls_context=self.parts.tls.context,
            implicit_tls=implicit_tls,
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_quiet_aborted_handshakes)
        host = self.settings.relay_bind_host
        reuse = self.reuse_port or None
        submission = await loop.create_server(
            lambda: self._factory(False), host, self.submission_port, reuse_port=reuse
        )
        # Plain TCP on the implicit-TLS port too: the protocol admits the connection (session and rate caps)
        # first and starts TLS after, so a flood of handshakes is counted and capped like any connection.
        smtps = await loop.create_server(lambda: self._factory(True), host, self.smtps_port, reuse_port=reuse)
        self._servers = [submission, smtps]
        self.submission_port = submission.sockets[0].getsockname()[1]
        self.smtps_port = smtps.sockets[0].getsockname()[1]
        self._tasks = [
            asyncio.create_task(
                self.parts.revocations.listen(
                    self.parts.sessions.on_channel_message,
                    self._stop,
                    self.parts.sessions.forget_rechecks,
                )
            ),
            asyncio.create_task(self.parts.tls.watch(self.settings.relay_tls_reload_seconds, self._stop)),
            asyncio.create_task(self._watch_readiness()),
        ]
        await self.health.start()
        log.info("relay listening", extra={"submission": self.submission_port, "smtps": self.smtps_port})

    async def _report_ready(self) -> bool:
        return self._ready

    async def _watch_readiness(self) -> None:
        while not self._stop.is_set():
            # Ready only while Redis answers AND accepts the relay's writes: with a read-only user the failure
            # counters cannot be kept (AUTH then fails closed with 454), which must not go unnoticed. Never again
            # once draining: the listeners are closed.
            writable = await self.parts.auth_cache.writable()
            self._ready = writable and not self._draining
            await sleep_unless_stopped(self._stop, 1.0)
        self._ready = False

    async def drain(self) -> None:
        """Stop accepting; close idle sessions at once and let each other one finish its message (no new one);
        after the grace period close what is left, except sessions whose message is on its way to the upstream:
        they get the bound of a whole delivery more (cut off, the client would retry a message the upstream may
        hold)."""
        self._draining = True
        self._ready = False
        sessions = self.parts.sessions
        sessions.close_admission()
        for server in self._servers:
            server.close()
        for connection in list(sessions.sessions):
            await connection.request_drain()
        left = await sessions.drain(self.settings.relay_drain_grace_seconds)
        for connection in left:
            if not connection.delivering:
                await connection.close_with(replies.SHUTTING_DOWN)
        if any(connection.delivering for connection in left):
            left = await sessions.drain(self.settings.relay_upstream_delivery_seconds)
        for connection in left:
            await connection.close_with(replies.SHUTTING_DOWN)
        self._stop.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.parts.aclose()
        await self.health.stop()
        log.info("relay stopped")

    async def serve_until_signalled(self) -> None:
        await self.start()
        stop = asyncio.Event()
        stop_on_signals(stop)
        await stop.wait()
        log.info("signal received, draining", extra={"grace_seconds": self.settings.relay_drain_grace_seconds})
        await self.drain()

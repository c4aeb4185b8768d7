"""The usage loops of a projector instance (issue 16): the flusher (every `usage_flush_seconds`, the relays' Redis
counters -> the usage topic) and the usage consumer (the usage topic -> `rm_usage_windows` and last use).

Both are at-least-once and harmless to repeat (windows are totals applied with GREATEST), so several instances
run them side by side without coordination. A failure is logged and retried at the next turn; it never stops the
event consumer.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from datetime import UTC, datetime

from taifa_runtime.lifecycle import sleep_unless_stopped

from taifa_projector import bootstrap
from taifa_projector.adapters.kafka import to_record
from taifa_projector.settings import Settings

log = logging.getLogger(__name__)


class UsageWorker:
    """`start()`, then `run(stop)`, then `close()`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = AsyncExitStack()
        self.windows_applied = 0

    async def start(self) -> None:
        self.parts = await bootstrap.usage_parts(self.settings, self._stack)
        await self.parts.consumer.start()

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(self._flush_loop(stop), self._consume_loop(stop))

    async def flush_once(self) -> int:
        return await self.parts.flusher.flush(datetime.now(UTC))

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.flush_once()
            except Exception:  # a store down: the counters stay in Redis, the next turn publishes them
                log.exception("usage flush failed; retrying at the next interval")
            if await sleep_unless_stopped(stop, self.settings.usage_flush_seconds):
                return

    async def _consume_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._consume_once(stop)
            except Exception:  # never let usage take the event consumer down with it (run() gathers both)
                log.exception("usage consumer failed; retrying")
                if await sleep_unless_stopped(stop, self.settings.projector_retry_max_seconds):
                    return

    async def _consume_once(self, stop: asyncio.Event) -> None:
        """One poll: apply its windows (retried until applied), then commit its offsets."""
        consumer = self.parts.consumer
        polled = await consumer.getmany(timeout_ms=self.settings.projector_poll_timeout_ms)
        records = [to_record(m) for messages in polled.values() for m in messages]
        if not records:
            return
        while True:
            try:
                applied, _ = await self.parts.applier.apply(records)
                break
            except Exception:
                log.exception("applying usage windows failed; retrying")
                if stop.is_set():
                    return
                if await sleep_unless_stopped(stop, self.settings.projector_retry_max_seconds):
                    return
        self.windows_applied += applied
        await consumer.commit()

    async def close(self) -> None:
        await self._stack.aclose()

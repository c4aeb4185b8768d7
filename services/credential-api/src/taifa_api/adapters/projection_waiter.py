"""Read-your-writes: wait until the projector says an event is applied to the read model and the auth cache.

One subscription per process to `auth_cache.APPLIED_CHANNEL` dispatches to waiting requests. A request
registers first, then checks `auth_cache.applied_key(event_id)` (the signal may already be there), then
waits for the message, bounded by the caller's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from taifa_events import auth_cache
from taifa_runtime.lifecycle import sleep_unless_stopped

log = logging.getLogger(__name__)


class RedisProjectionWaiter:
    """The application's ProjectionWaiter port on the projector's applied signals in Redis."""

    def __init__(self, client: aioredis.Redis, retry_seconds: float = 1.0) -> None:
        self._client = client
        self._retry = retry_seconds
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._subscribed = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the subscription alive until `stop` is set."""
        while not stop.is_set():
            try:
                await self._listen(stop)
            except (RedisError, OSError) as exc:
                log.warning("applied-signal subscription lost (%s); resubscribing", type(exc).__name__)
            except Exception as exc:  # noqa: BLE001 - the subscription must outlive any single failure
                log.error("applied-signal subscription failed (%s); resubscribing", type(exc).__name__)
            finally:
                self._subscribed.clear()
            await sleep_unless_stopped(stop, self._retry)

    async def _listen(self, stop: asyncio.Event) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(auth_cache.APPLIED_CHANNEL)
            self._subscribed.set()
            # Signals sent while we were not subscribed are still in their keys.
            for event_id in list(self._waiters):
                if await self._client.exists(auth_cache.applied_key(event_id)):
                    self._resolve(event_id)
            while not stop.is_set():
                message = await pubsub.get_message(timeout=1.0)
                if message and message.get("type") == "message":
                    data = message["data"]
                    self._resolve(data.decode() if isinstance(data, bytes) else str(data))
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _resolve(self, event_id: str) -> None:
        for future in self._waiters.get(event_id.strip(), ()):
            if not future.done():
                future.set_result(None)

    async def wait_entry_at(self, username: str, event_id: UUID, position: int, within_seconds: float) -> bool:
        """True when the auth-cache entry of `username` already holds the effects of `event_id` at `position` (its
        position is at or past it), or once the projector signals that event applied, within `within_seconds`.

        For a command that changed nothing (a repeat, or the loser of two at once): the state it answers with was
        committed by an earlier command, whose own wait may have ended `pending`. An event applied long ago has no
        signal any more (its key lives a minute), but the entry's position says the relay has it; one still on
        its way is waited for like any other (`wait_applied`)."""
        if within_seconds <= 0:
            return False
        deadline = asyncio.get_running_loop().time() + within_seconds
        try:
            async with asyncio.timeout(within_seconds):
                await self._subscribed.wait()
                stored = await self._client.hget(auth_cache.auth_key(username), "position")
                if stored is not None and int(stored) >= position:
                    return True
        except (TimeoutError, RedisError, OSError, ValueError):
            return False
        return await self.wait_applied(event_id, deadline - asyncio.get_running_loop().time())

    async def wait_applied(self, event_id: UUID, within_seconds: float) -> bool:
        """True when the projector signalled `event_id` within `within_seconds`."""
        if within_seconds <= 0:
            return False
        key = str(event_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_seconds
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(key, set()).add(future)
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._subscribed.wait()
                    if await self._client.exists(auth_cache.applied_key(key)):
                        return True
            except (TimeoutError, RedisError, OSError):
                return False
            # Bounded on its own: the timeout above cancels once, and redis-py's `asyncio.wait_for` (Python 3.11) can
            # swallow that cancellation when it lands as the command completes; `asyncio.wait` always returns at
            # its timeout.
            done, _ = await asyncio.wait({future}, timeout=max(0.0, deadline - loop.time()))
            return bool(done)
        finally:  # every way out (a signal already there, the bound, an error, a cancellation) forgets the waiter
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    del self._waiters[key]

"""The relay's subscription to the revocation channel (`taifa_events.auth_cache.REVOCATIONS_CHANNEL`): revocations
and "credential changed" notices reach the sessions through it (`application.sessions.SessionRegistry`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from taifa_events.auth_cache import REVOCATIONS_CHANNEL
from taifa_runtime.lifecycle import sleep_unless_stopped
from taifa_runtime.redis import redis_client

log = logging.getLogger("taifa.relay.cache")

# A channel quiet this long is sent a PING, and a connection that leaves it unanswered as long counts as lost.
PING_SECONDS = 10.0


class RevocationListener:
    """Listens on the revocation channel of the Redis at `url`, on a connection of its own."""

    def __init__(self, url: str) -> None:
        self._url = url

    async def listen(
        self,
        on_message: Callable[[str], None],
        stop: asyncio.Event,
        on_gap: Callable[[], None] | None = None,
        *,
        ping_seconds: float = PING_SECONDS,
    ) -> None:
        """Call `on_message(message)` for every message on the channel; reconnect on errors, calling `on_gap` when
        the subscription is lost and again once Redis has confirmed the new one (messages may have been missed
        meanwhile; from the confirmation on none is).

        A connection that says nothing for `ping_seconds` is sent a PING, and one that has not answered it
        `ping_seconds` later counts as lost: a half-open connection (a Redis failed over, a NAT that forgot it)
        would otherwise leave the relay deaf to revocations with no error at all."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            # No read timeout: the subscriber waits on the channel on purpose, get_message bounds each wait.
            client = redis_client(self._url, timeout=None, socket_keepalive=True)
            pubsub = client.pubsub(ignore_subscribe_messages=False)
            try:
                await pubsub.subscribe(REVOCATIONS_CHANNEL)
                heard, pinged = loop.time(), None
                while not stop.is_set():
                    message = await pubsub.get_message(timeout=1.0)
                    now = loop.time()
                    if message:
                        heard, pinged = now, None
                        if message.get("type") == "subscribe":
                            if on_gap is not None:
                                on_gap()
                        elif message.get("type") == "message":
                            data = message["data"]
                            on_message(data.decode() if isinstance(data, bytes) else str(data))
                    elif pinged is not None and now - pinged > ping_seconds:
                        raise RedisConnectionError("no answer to PING on the revocation channel")
                    elif pinged is None and now - heard > ping_seconds:
                        await pubsub.ping()
                        pinged = now
            except (RedisError, OSError) as exc:
                log.warning("revocation channel lost, resubscribing", extra={"error": type(exc).__name__})
                if on_gap is not None:
                    on_gap()  # from now on every session re-reads its entry: a message may be missed
                await sleep_unless_stopped(stop, 1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                    await client.aclose()

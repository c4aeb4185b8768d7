"""The outbox publisher: sends committed events from the event store to Kafka in position order.

One publisher is active at a time (a session advisory lock on its dedicated connection), so several API
processes are safe. It wakes on LISTEN/NOTIFY (with a slow safety re-check), records the last position
Kafka acknowledged, and after a crash resumes from there: nothing is skipped, a few events may be sent
twice (consumers are idempotent). A broker that lost the log (restarted empty, topics recreated) is
noticed at start and every `log_check_seconds`, and the whole event store is replayed to it; the bounds it is
judged by are kept with the progress, so a log lost while no publisher ran is noticed by the next one.

Every record is signed (`taifa_events.signing`: HMAC-SHA256 of the exact value bytes, key id and tag in
headers) with the keyring's active key: the projector applies only records that verify, so being able
to produce to Kafka is not enough to mint a login.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any, Final

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from taifa_events import encode, kafka_headers
from taifa_events.signing import Keyring
from taifa_runtime.lifecycle import sleep_unless_stopped

from taifa_api import metrics
from taifa_api.adapters import database, event_store
from taifa_api.adapters.broker_log import BrokerLogWatch

PUBLISHER_LOCK_KEY: Final = 0x7A1FA_0002
PUBLISHER_NAME: Final = "kafka"

log = logging.getLogger(__name__)


class OutboxPublisher:
    def __init__(
        self,
        database_url: str,
        kafka: str | Mapping[str, Any],
        *,
        keyring: Keyring,
        batch_size: int = 500,
        idle_poll_seconds: float = 2.0,
        retry_seconds: float = 1.0,
        log_check_seconds: float = 30.0,
    ) -> None:
        self._database_url = database_url
        # A bootstrap "host:port" list, or the full client options (TLS/SASL) from the settings.
        self._kafka = {"bootstrap_servers": kafka} if isinstance(kafka, str) else dict(kafka)
        if keyring.active is None:
            raise ValueError("the publisher needs a keyring with an active signing key")
        self._keyring = keyring
        self._batch_size = batch_size
        self._idle_poll = idle_poll_seconds
        self._retry = retry_seconds
        self._log_check = log_check_seconds
        self._watch = BrokerLogWatch(self._kafka)
        self.is_leader = False
        self.published_position = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set, surviving database and broker outages."""
        while not stop.is_set():
            try:
                await self._run_once(stop)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, KafkaError, TimeoutError) as exc:
                log.warning("outbox publisher interrupted (%s); retrying", type(exc).__name__)
            except Exception as exc:  # noqa: BLE001 - the publisher must outlive any single failure
                log.error("outbox publisher failed (%s); retrying", type(exc).__name__)
            finally:
                self.is_leader = False
                metrics.PUBLISHER_LEADER.set(0)
            await sleep_unless_stopped(stop, self._retry)

    async def _run_once(self, stop: asyncio.Event) -> None:
        conn = await database.connect(self._database_url)
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", PUBLISHER_LOCK_KEY):
                if await sleep_unless_stopped(stop, self._retry):
                    return
            self.is_leader = True
            metrics.PUBLISHER_LEADER.set(1)
            log.info("outbox publisher is the active publisher")
            await self._lead(conn, stop)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)

    async def _lead(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        wake = asyncio.Event()
        await conn.add_listener(event_store.NOTIFY_CHANNEL, lambda *_: wake.set())
        producer = AIOKafkaProducer(
            **self._kafka,
            acks="all",
            enable_idempotence=False,
            linger_ms=0,
            request_timeout_ms=15000,
        )
        await producer.start()
        try:
            position, floors = await self._load_progress(conn)
            self._watch.restore(floors)  # the bounds the last leader kept: a log lost meanwhile is noticed now
            last = await self._replay_if_log_lost(position)
            next_check = time.monotonic() + self._log_check
            while not stop.is_set():
                wake.clear()
                if time.monotonic() >= next_check:
                    last = await self._replay_if_log_lost(last)
                    next_check = time.monotonic() + self._log_check
                rows = await event_store.read_after(conn, last, self._batch_size)
                if rows:
                    last = await self._publish(producer, rows)
                    await self._save_progress(conn, last, self._watch.floors())
                    continue
                await _wait_any(wake, stop, min(self._idle_poll, max(0.0, next_check - time.monotonic())))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10)

    async def _replay_if_log_lost(self, last: int) -> int:
        if not await self._watch.log_lost(expect_messages=last > 0):
            return last
        log.warning("the broker lost events already published (new or wiped log); replaying from position 1")
        self._watch.forget()
        return 0

    async def _publish(self, producer: AIOKafkaProducer, rows: list[asyncpg.Record]) -> int:
        """Send a batch in position order and wait until Kafka acknowledged all of it."""
        pending = []
        for row in rows:
            envelope = event_store.row_to_envelope(row)
            value = encode(envelope)
            headers = kafka_headers(envelope.event_type, envelope.event_id, envelope.schema_version)
            pending.append(
                await producer.send(
                    row["topic"], value=value, key=envelope.key, headers=headers + self._keyring.headers(value)
                )
            )
        self._watch.record(await asyncio.gather(*pending))
        last = int(rows[-1]["position"])
        metrics.PUBLISHED.inc(len(rows))
        metrics.PUBLISHED_POSITION.set(last)
        self.published_position = last
        return last

    @staticmethod
    async def _load_progress(conn: asyncpg.Connection) -> tuple[int, dict[str, int]]:
        row = await conn.fetchrow(
            "SELECT last_position, log_floors FROM publisher_progress WHERE publisher = $1", PUBLISHER_NAME
        )
        if row is None:
            return 0, {}
        return int(row["last_position"]), dict(row["log_floors"])  # jsonb decoded by the connection's codec

    @staticmethod
    async def _save_progress(conn: asyncpg.Connection, position: int, floors: dict[str, int]) -> None:
        await conn.execute(
            "INSERT INTO publisher_progress (publisher, last_position, log_floors, updated_at) "
            "VALUES ($1, $2, $3::jsonb, now()) ON CONFLICT (publisher) DO UPDATE SET "
            "last_position = excluded.last_position, log_floors = excluded.log_floors, updated_at = now()",
            PUBLISHER_NAME,
            position,
            floors,
        )


async def _wait_any(wake: asyncio.Event, stop: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()

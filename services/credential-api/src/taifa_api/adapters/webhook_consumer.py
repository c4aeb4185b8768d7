"""The webhook dispatcher's Kafka consumer (aiokafka): group `taifa-webhooks` over the event topics and the usage
topic, positioned from the offsets PostgreSQL recorded with the deliveries (`webhook_consumer_offsets`).

Those offsets are the truth: on every assignment each partition is sought to its recorded offset, or to the start
of its log when none is recorded (a new deployment reads the history; the endpoints' creation times keep it from
being delivered). Offsets committed to Kafka only follow, for lag tools. A recorded offset the log no longer holds
falls back to the earliest one (`auto_offset_reset`): what is read twice is absorbed by the deliveries' unique key.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata

log = logging.getLogger(__name__)

# How long the broker may hold a fetch waiting for records: part of every event's way to its webhook (aiokafka's
# default, 500 ms, was most of the event-to-delivery delay).
FETCH_MAX_WAIT_MS = 100

LoadOffsets = Callable[[Sequence[tuple[str, int]]], Awaitable[dict[tuple[str, int], int]]]


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


class _SeekToRecorded(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, load_offsets: LoadOffsets) -> None:
        self.consumer: AIOKafkaConsumer | None = None
        self.load_offsets = load_offsets
        self.assigned = False

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self.assigned = False

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        consumer = self.consumer
        assert consumer is not None
        recorded = await self.load_offsets([(tp.topic, tp.partition) for tp in assigned])
        fresh = []
        for tp in assigned:
            offset = recorded.get((tp.topic, tp.partition))
            if offset is None:
                fresh.append(tp)
            else:
                consumer.seek(tp, offset)
        if fresh:
            await consumer.seek_to_beginning(*fresh)
        self.assigned = True
        log.info("partitions assigned: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


class WebhookConsumer:
    def __init__(
        self,
        kafka_options: Mapping[str, Any],
        topic_names: Sequence[str],
        *,
        group_id: str,
        load_offsets: LoadOffsets,
        batch_size: int,
    ) -> None:
        self._listener = _SeekToRecorded(load_offsets)
        self.consumer = AIOKafkaConsumer(
            **dict(kafka_options),
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=batch_size,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        self._listener.consumer = self.consumer
        self.consumer.subscribe(list(topic_names), listener=self._listener)

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    @property
    def assigned(self) -> bool:
        return self._listener.assigned

    async def poll(self, timeout_ms: int) -> list[Record]:
        polled = await self.consumer.getmany(timeout_ms=timeout_ms)
        return [
            Record(m.topic, m.partition, m.offset, m.value, tuple(m.headers or ()))
            for messages in polled.values()
            for m in messages
        ]

    async def commit_hint(self, next_offsets: Mapping[tuple[str, int], int]) -> None:
        """Tell Kafka how far the group is (lag tools); PostgreSQL already holds the truth, so a failure is logged."""
        try:
            await self.consumer.commit(
                {TopicPartition(t, p): OffsetAndMetadata(o, "") for (t, p), o in next_offsets.items()}
            )
        except Exception as exc:  # noqa: BLE001 - a rebalance under way: the next batch commits again
            log.info("offset hint not committed to Kafka (%s)", type(exc).__name__)

"""Notices a broker that no longer holds what the publisher sent (an in-memory broker restarted empty,
topics deleted and recreated), so the publisher can replay the event store instead of leaving a hole."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import RecordMetadata
from taifa_events import topics


class BrokerLogWatch:
    def __init__(self, kafka: Mapping[str, Any]) -> None:
        self._kafka = kafka
        self._highest: dict[TopicPartition, int] = {}

    def record(self, metadata: RecordMetadata) -> None:
        """Remember the highest offset the broker acknowledged per partition."""
        partition = TopicPartition(metadata.topic, metadata.partition)
        self._highest[partition] = max(self._highest.get(partition, -1), metadata.offset)

    def forget(self) -> None:
        self._highest.clear()

    async def log_lost(self, *, expect_messages: bool) -> bool:
        """True when the topics are empty although we published before, or shorter than what we saw acked."""
        consumer = AIOKafkaConsumer(**self._kafka, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer.topics()  # fresh cluster metadata
            partitions = [
                TopicPartition(topic, number)
                for topic in topics.ALL_TOPICS
                for number in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions) if partitions else {}
        finally:
            await consumer.stop()
        if expect_messages and sum(ends.values()) == 0:
            return True
        return any(ends.get(partition, 0) <= offset for partition, offset in self._highest.items())

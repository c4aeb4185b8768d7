"""Notices a broker that no longer holds what the publisher sent (an in-memory broker restarted empty,
topics deleted and recreated), so the publisher can replay the event store instead of leaving a hole."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import RecordMetadata
from taifa_events import topics


class BrokerLogWatch:
    """What the broker acknowledged, to compare with its logs' end offsets.

    A log's end offset is at least one past the first record of its last batch: Kafka reports the offset after its
    last record, tansu the offset after its last batch's first record. A batch never spans two of the publisher's
    rounds (each round waits for all its acknowledgements), so per partition the lowest offset acknowledged in the
    last round that wrote to it is the bound: a log that ends at or below it lost records."""

    def __init__(self, kafka: Mapping[str, Any]) -> None:
        self._kafka = kafka
        self._floor: dict[TopicPartition, int] = {}

    def record(self, acknowledged: Iterable[RecordMetadata]) -> None:
        """One round's acknowledgements: per partition, the lowest offset of the round."""
        lowest: dict[TopicPartition, int] = {}
        for metadata in acknowledged:
            partition = TopicPartition(metadata.topic, metadata.partition)
            lowest[partition] = min(lowest.get(partition, metadata.offset), metadata.offset)
        for partition, offset in lowest.items():
            # Never lowered: a round written to a new (wiped, re-created) log starts near 0, and taking its offsets
            # as the bound would hide the loss of everything acknowledged before.
            self._floor[partition] = max(self._floor.get(partition, -1), offset)

    def forget(self) -> None:
        self._floor.clear()

    def floors(self) -> dict[str, int]:
        """The bounds, to be kept with the publisher's progress (`restore` after a restart or a change of leader):
        a log lost while no publisher ran is then noticed too."""
        return {f"{partition.topic}/{partition.partition}": offset for partition, offset in self._floor.items()}

    def restore(self, floors: Mapping[str, int]) -> None:
        """Start from the bounds `floors()` gave (the ones kept with the progress)."""
        self._floor = {}
        for name, offset in floors.items():
            topic, _, number = name.rpartition("/")
            self._floor[TopicPartition(topic, int(number))] = int(offset)

    async def log_lost(self, *, expect_messages: bool) -> bool:
        """True when the topics are empty although we published before, or a log ends at or below the first record
        the broker acknowledged in the last round that wrote to it."""
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
        return any(ends.get(partition, 0) <= offset for partition, offset in self._floor.items())

"""The Kafka topics read whole, without a consumer group (`ports.EventLog`, for rebuilds): where each partition's
log starts and ends, and every record up to the ends. Split from `kafka.py` (the live consumer, producer and dead
letters), which it shares the connection options and the record conversion with."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from taifa_projector.adapters.kafka import KafkaConnection, _client_options, to_record
from taifa_projector.application.ports import LogChunk, Record
from taifa_projector.domain.log_positions import LogNotFromZero, TopicPartitionKey


async def _partitions_of(consumer: AIOKafkaConsumer, topic_names: Sequence[str]) -> list[TopicPartition]:
    """Every partition of `topic_names`, in topic then partition order."""
    await consumer.topics()  # loads the metadata of every topic
    return [
        TopicPartition(topic, p) for topic in topic_names for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]


async def log_starts(kafka: KafkaConnection, topic_names: Sequence[str]) -> dict[TopicPartitionKey, int]:
    """The first offset each partition of `topic_names` still holds (0 unless records were deleted)."""
    consumer = AIOKafkaConsumer(**_client_options(kafka), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = await _partitions_of(consumer, topic_names)
        starts = await consumer.beginning_offsets(partitions) if partitions else {}
        return {(tp.topic, tp.partition): offset for tp, offset in starts.items()}
    finally:
        await consumer.stop()


async def log_ends(kafka: KafkaConnection, topic_names: Sequence[str]) -> dict[TopicPartitionKey, int]:
    """The offset the next record of each partition of `topic_names` will get: the high-water mark of a fetch (the
    local broker's ListOffsets answer lags behind it, as `read_topics_to_end` says), fetched from the end that
    ListOffsets gives, so that next to nothing is read."""
    consumer = AIOKafkaConsumer(
        **_client_options(kafka), enable_auto_commit=False, auto_offset_reset="latest", group_id=None
    )
    await consumer.start()
    try:
        partitions = await _partitions_of(consumer, topic_names)
        if not partitions:
            return {}
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        ends: dict[TopicPartitionKey, int] = {}
        while len(ends) < len(partitions):  # the caller bounds the time
            await consumer.getmany(timeout_ms=200, max_records=1)
            for tp in partitions:
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    ends[(tp.topic, tp.partition)] = highwater
        return ends
    finally:
        await consumer.stop()


class KafkaTopics:
    """`ports.EventLog`: whole topics, read without a consumer group (rebuilds)."""

    def __init__(self, kafka: KafkaConnection) -> None:
        self.kafka = kafka

    async def log_starts(self, topic_names: Sequence[str]) -> dict[TopicPartitionKey, int]:
        return await log_starts(self.kafka, topic_names)

    async def log_ends(self, topic_names: Sequence[str]) -> dict[TopicPartitionKey, int]:
        return await log_ends(self.kafka, topic_names)

    def read_to_end(self, topic_names: Sequence[str]) -> AsyncIterator[LogChunk]:
        return read_topics_to_end(self.kafka, topic_names)


async def read_topics_to_end(
    kafka: KafkaConnection, topic_names: Sequence[str], *, chunk: int = 10_000
) -> AsyncIterator[LogChunk]:
    """Every record from offset 0 up to each partition's high-water mark when first fetched, without a group.

    The end of a partition is the high-water mark of its first fetch response (the local broker's
    ListOffsets answer lags behind, the fetch high-water mark does not). Yields (records, positions so
    far, ends known so far) so a caller can show progress. Raises `LogNotFromZero` if a partition does
    not start at offset 0, or stops doing so while it is read (retention), before yielding its records.
    """
    consumer = AIOKafkaConsumer(
        **_client_options(kafka), enable_auto_commit=False, auto_offset_reset="none", group_id=None,
        max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
    )  # fmt: skip
    await consumer.start()
    try:
        partitions = await _partitions_of(consumer, topic_names)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        starts = {(tp.topic, tp.partition): await consumer.position(tp) for tp in partitions}
        if any(starts.values()):
            raise LogNotFromZero(starts)
        ends: dict[TopicPartitionKey, int] = {}
        done: dict[TopicPartitionKey, int] = {(tp.topic, tp.partition): 0 for tp in partitions}
        while len(ends) < len(partitions) or any(done[key] < end for key, end in ends.items()):
            try:
                batch = await consumer.getmany(timeout_ms=200, max_records=chunk)
            except OffsetOutOfRangeError as exc:
                moved = await consumer.beginning_offsets(list(exc.args[0]))
                raise LogNotFromZero({(tp.topic, tp.partition): start for tp, start in moved.items()}) from exc
            records: list[Record] = []
            for tp in partitions:
                key = (tp.topic, tp.partition)
                highwater = consumer.highwater(tp)
                if key not in ends and highwater is not None:
                    ends[key] = highwater
                for message in batch.get(tp, ()):
                    if key not in ends or message.offset < ends[key]:
                        records.append(to_record(message))
                        done[key] = message.offset + 1
                if key in ends and done[key] >= ends[key] and tp not in consumer.paused():
                    consumer.pause(tp)
            yield records, dict(done), dict(ends)
    finally:
        await consumer.stop()

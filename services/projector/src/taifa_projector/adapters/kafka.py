"""Kafka (aiokafka): the group consumer that resumes from the offsets in PostgreSQL, the dead-letter
producer, and a reader of whole topics for rebuilds.

Offsets in PostgreSQL are the truth (they commit with the effects); offsets committed to Kafka only
follow them, for lag tools. On every assignment the consumer seeks to the recorded offsets, or to the
beginning when none are recorded or the log is shorter than recorded (a new or recreated topic). It
never resets an offset by itself (`auto_offset_reset="none"`): a recorded offset below the log start is a
retention gap, and the partition is paused and reported instead of skipped (`domain.log_positions`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, NoOffsetForPartitionError, OffsetOutOfRangeError
from taifa_events import declared_type, signing, topics
from taifa_events.signing import signature_of

from taifa_projector.application.ports import Record
from taifa_projector.domain.log_positions import (
    FromBeginning,
    LogGap,
    Position,
    Resume,
    TopicPartitionKey,
    on_assignment,
    on_out_of_range,
)

log = logging.getLogger(__name__)

DLQ_HEADER_REASON = "taifa-dlq-reason"
DLQ_HEADER_ERROR = "taifa-dlq-error"
DLQ_HEADER_TOPIC = "taifa-dlq-source-topic"
DLQ_HEADER_PARTITION = "taifa-dlq-source-partition"
DLQ_HEADER_OFFSET = "taifa-dlq-source-offset"
DLQ_HEADER_ATTEMPTS = "taifa-dlq-attempts"

LoadOffsets = Callable[[list[TopicPartitionKey]], Awaitable[dict[TopicPartitionKey, int]]]
# The first offset each partition still holds (ListOffsets "earliest").
LogStarts = Callable[[list[TopicPartition]], Awaitable[dict[TopicPartition, int]]]
# A bootstrap "host:port" list, or the full client options (TLS/SASL) from Settings.kafka_client_options().
KafkaConnection = str | Mapping[str, Any]


def _client_options(kafka: KafkaConnection) -> dict[str, Any]:
    return {"bootstrap_servers": kafka} if isinstance(kafka, str) else dict(kafka)


def make_producer(kafka: KafkaConnection) -> AIOKafkaProducer:
    # The local broker (Tansu) does not support the idempotent producer: docs/interfaces.md.
    return AIOKafkaProducer(**_client_options(kafka), enable_idempotence=False, acks="all")


class KafkaDeadLetters:
    """Sends a record, unchanged, to `<topic>.dlq` with headers saying why and where it came from."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def send(self, record: Record, *, reason: str, error: str, attempts: int) -> None:
        headers = [
            (DLQ_HEADER_REASON, reason.encode()),
            (DLQ_HEADER_ERROR, error[:500].encode()),
            (DLQ_HEADER_TOPIC, record.topic.encode()),
            (DLQ_HEADER_PARTITION, str(record.partition).encode()),
            (DLQ_HEADER_OFFSET, str(record.offset).encode()),
            (DLQ_HEADER_ATTEMPTS, str(attempts).encode()),
        ]
        if record.signature is not None:  # kept, so that a record replayed from the DLQ still verifies
            headers += [
                (signing.HEADER_SIGNATURE, record.signature.tag.hex().encode()),
                (signing.HEADER_KEY_ID, record.signature.key_id.encode()),
            ]
        await self.producer.send_and_wait(
            topics.dead_letter_topic(record.topic), record.value, key=record.key, headers=headers
        )


class SeekToRecordedOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, position each partition at the offset PostgreSQL recorded, or stop it at a log gap.

    `log_starts` asks the broker where each partition's log starts (the consumer's `beginning_offsets`
    unless given); `on_gap` hears of every partition stopped, `on_revoked` of every partition taken away.
    """

    def __init__(
        self,
        load_offsets: LoadOffsets,
        on_assigned: Callable[[], None],
        *,
        on_gap: Callable[[LogGap], None],
        on_revoked: Callable[[list[TopicPartitionKey]], None],
        log_starts: LogStarts | None = None,
    ) -> None:
        self.consumer: AIOKafkaConsumer | None = None
        self.load_offsets = load_offsets
        self.on_assigned = on_assigned
        self.on_gap = on_gap
        self.on_revoked = on_revoked
        self._log_starts = log_starts
        # Awaited before partitions are given up: the consume loop lets its batch in flight and its Redis writes
        # land, so the next owner's first batch finds the cache where PostgreSQL's offsets say it is.
        self.before_revoke: Callable[[], Awaitable[None]] | None = None
        # Rebalances so far (partitions taken away or given): records polled across one may come from another
        # owner's time or from a position set before this listener's own (Kafka's committed offset): dropped.
        self.rebalances = 0

    async def log_starts(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self._log_starts is not None:
            return await self._log_starts(partitions)
        assert self.consumer is not None
        starts: dict[TopicPartition, int] = await self.consumer.beginning_offsets(partitions)
        return starts

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        log.info("partitions revoked: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked))
        if revoked:
            self.rebalances += 1
            if self.before_revoke is not None:
                await self.before_revoke()
        self.on_revoked([(tp.topic, tp.partition) for tp in revoked])

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        if not assigned:
            return
        await self.reposition(assigned)
        self.rebalances += 1
        log.info("partitions assigned: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
        self.on_assigned()

    async def reposition(self, partitions: Sequence[TopicPartition]) -> None:
        """Position `partitions` from the offsets PostgreSQL recorded and where their logs start.

        Also the answer to NoOffsetForPartitionError: the consumer's fetcher may look for a position of a
        just-assigned partition while this listener is still reading PostgreSQL (it never picks one itself).
        """
        recorded = await self.load_offsets([(tp.topic, tp.partition) for tp in partitions])
        starts = await self.log_starts(list(partitions))
        # An offset past the end of a recreated log is out of range: the first fetch says so and
        # `out_of_range` replays that partition from 0 (the idempotent writes absorb what was applied).
        await self._position(
            {tp: on_assignment((tp.topic, tp.partition), recorded.get((tp.topic, tp.partition)), starts.get(tp, 0))
             for tp in partitions}
        )  # fmt: skip

    async def out_of_range(self, fetch_offsets: Mapping[TopicPartition, int]) -> None:
        """A fetch was out of range (the consumer raised OffsetOutOfRangeError): a new log, or a gap."""
        starts = await self.log_starts(list(fetch_offsets))
        positions = {
            tp: on_out_of_range((tp.topic, tp.partition), offset, starts.get(tp, 0))
            for tp, offset in fetch_offsets.items()
        }
        for tp, position in positions.items():
            if isinstance(position, FromBeginning):
                log.warning(
                    "%s[%d]: recorded offset %d is past the end of the log (a recreated topic, or a broker that "
                    "lost its data): reading it again from offset 0",
                    tp.topic, tp.partition, fetch_offsets[tp],
                )  # fmt: skip
        await self._position(positions)

    async def past_end(self) -> None:
        """Partitions positioned past their log's end: a new log even where the broker reports no error.

        Kafka answers a fetch past the end with OFFSET_OUT_OF_RANGE; the local broker (Tansu) answers with
        no records and the high-water mark. Every fetch response carries that mark, so a position above
        it means the log is not the one the offset was recorded in.
        """
        consumer = self.consumer
        assert consumer is not None
        paused = consumer.paused()
        beyond: dict[TopicPartition, int] = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None or tp in paused:
                continue
            position = await consumer.position(tp)
            if position > highwater:
                beyond[tp] = position
        if beyond:
            await self.out_of_range(beyond)

    async def _position(self, positions: Mapping[TopicPartition, Position]) -> None:
        consumer = self.consumer
        assert consumer is not None
        fresh: list[TopicPartition] = []
        for tp, position in positions.items():
            if isinstance(position, Resume):
                consumer.seek(tp, position.offset)
            elif isinstance(position, FromBeginning):
                fresh.append(tp)
            else:
                # Paused for good (while this instance owns it). The seek only gives the partition a valid
                # position, so the consumer never looks for a committed offset; nothing is fetched from it.
                consumer.seek(tp, position.log_start)
                consumer.pause(tp)
                self.on_gap(position)
        if fresh:
            await consumer.seek_to_beginning(*fresh)


def make_consumer(
    kafka: KafkaConnection,
    topic_names: Sequence[str],
    *,
    group_id: str,
    batch_size: int,
    session_timeout_ms: int,
    max_poll_interval_ms: int,
    listener: SeekToRecordedOffsets,
) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        **_client_options(kafka),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="none",  # never skip: an out-of-range offset is decided by `out_of_range`
        session_timeout_ms=session_timeout_ms,
        # How long the group waits for a member's rebalance callbacks (`before_revoke` takes at most half of it).
        rebalance_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=max(100, session_timeout_ms // 3),
        max_poll_interval_ms=max_poll_interval_ms,
        max_poll_records=batch_size,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    listener.consumer = consumer
    consumer.subscribe(list(topic_names), listener=listener)
    return consumer


class GroupConsumer:
    """The group consumer as the consume loop uses it: records in, offsets (and lag) out.

    A poll that finds a partition out of range (a new log, or a gap) or not positioned yet (fetched before
    the rebalance listener sought it) positions it again from PostgreSQL and the log start: never skipped.
    """

    def __init__(self, consumer: AIOKafkaConsumer, listener: SeekToRecordedOffsets) -> None:
        self.consumer = consumer
        self.listener = listener

    async def poll(self, *, timeout_ms: int, max_records: int) -> list[Record]:
        try:
            polled = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
            return [to_record(m) for messages in polled.values() for m in messages]
        except OffsetOutOfRangeError as exc:
            positioning = self.listener.out_of_range(exc.args[0])
        except NoOffsetForPartitionError as exc:
            positioning = self.listener.reposition([exc.args[0]])
        try:
            await positioning
        except KafkaError as exc:  # the partition stays unpositioned: the next poll raises again and retries
            log.warning("could not ask Kafka where a log starts (%s); trying again", type(exc).__name__)
        return []

    def assigned(self) -> list[TopicPartitionKey]:
        return [(tp.topic, tp.partition) for tp in self.consumer.assignment()]

    def rebalances(self) -> int:
        """How many times partitions were taken from or given to this member so far."""
        return self.listener.rebalances

    async def rewind(self) -> None:
        """Position every assigned partition at PostgreSQL's offsets again: records polled and then dropped
        (polled across a rebalance) are fetched anew. If the assignment changes meanwhile, the next rebalance's
        listener positions the new one (so a refusal here is only logged)."""
        assigned = list(self.consumer.assignment())
        if not assigned:
            return
        try:
            await self.listener.reposition(assigned)
        except KafkaError as exc:  # IllegalStateError: a partition no longer assigned
            log.warning("could not read the partitions again from the recorded offsets (%s)", type(exc).__name__)

    async def commit(self, offsets: dict[TopicPartitionKey, int]) -> dict[TopicPartitionKey, int]:
        """Follow PostgreSQL's offsets in Kafka (for lag tools; a failure here loses nothing). Returns how many
        records each partition is behind its high-water mark, where the consumer knows it."""
        try:
            await self.consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})
        except (KafkaError, AssertionError) as exc:
            log.info("offset commit to Kafka skipped (%s); PostgreSQL holds the offsets", type(exc).__name__)
        behind: dict[TopicPartitionKey, int] = {}
        for (topic, partition), offset in offsets.items():
            highwater = self.consumer.highwater(TopicPartition(topic, partition))
            if highwater is not None:
                behind[(topic, partition)] = max(0, highwater - offset)
        return behind


def to_record(message: object) -> Record:
    return Record(
        topic=message.topic,  # type: ignore[attr-defined]
        partition=message.partition,  # type: ignore[attr-defined]
        offset=message.offset,  # type: ignore[attr-defined]
        key=message.key,  # type: ignore[attr-defined]
        value=message.value,  # type: ignore[attr-defined]
        declared=declared_type(message.headers),  # type: ignore[attr-defined]
        signature=signature_of(message.headers),  # type: ignore[attr-defined]
    )

"""A consumed Kafka record, as the projector needs it (plain data, no client types)."""

from __future__ import annotations

from typing import NamedTuple

from taifa_events.signing import Signature

TopicPartitionKey = tuple[str, int]


class Record(NamedTuple):
    """One Kafka record: where it came from and its raw key and value (a named tuple: one is built per
    consumed record, and a frozen dataclass costs three times as much to build)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    declared: tuple[str, int] | None = None  # (event_type, schema_version) its headers name: a decoding hint
    signature: Signature | None = None  # what its signature headers claim; verified before decoding

    @property
    def tp(self) -> TopicPartitionKey:
        return (self.topic, self.partition)

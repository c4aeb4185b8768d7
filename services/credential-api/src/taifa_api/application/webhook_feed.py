"""Which Kafka records become webhook deliveries, and with which body (issue 17).

A record is believed only when the API (event topics) or the projector's flusher (usage topic) signed it, as the
projector checks (`taifa_events.signing`): producing to Kafka is not a way to make Taifa send a signed webhook.
An event of record becomes its audit event (`taifa_events.audit.audit_event`), a quota notice its
`smtp_credential.quota_reached`; anything else (usage windows, events outside the feed) is passed over. A record
that fails verification or decoding is counted and skipped here: the projector dead-letters the same record.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from taifa_events import InvalidEvent, declared_type, decode, rfc3339, topics
from taifa_events.audit import AuditEvent, audit_event, audit_event_from_quota
from taifa_events.signing import SIGNATURE_CONTEXT, USAGE_CONTEXTS, Keyring, SignatureRefused, signature_of
from taifa_events.usage import InvalidUsageRecord, QuotaReached, decode_usage_record

from taifa_api.application.webhook_ports import FeedEvent

log = logging.getLogger(__name__)


class KafkaRecord(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> tuple[tuple[str, bytes], ...]: ...


def payload_of(event: AuditEvent) -> dict[str, object]:
    """The delivery body (CONTRACT §8): `{"type", "timestamp", "data"}`, `data` the audit event's public fields."""
    return {"type": event.type, "timestamp": rfc3339(event.occurred_at), "data": event.public_json()}


def feed_event(record: KafkaRecord, keyring: Keyring) -> tuple[FeedEvent | None, str]:
    """(the feed event of `record` or None, the outcome for the records metric)."""
    contexts = USAGE_CONTEXTS if record.topic == topics.USAGE_TOPIC else (SIGNATURE_CONTEXT,)
    try:
        keyring.verify(record.value, signature_of(record.headers), contexts)
    except SignatureRefused as exc:
        return None, exc.reason
    assert record.value is not None  # verify refuses a record without a value
    event: AuditEvent | None
    if record.topic == topics.USAGE_TOPIC:
        try:
            usage = decode_usage_record(record.value)
        except InvalidUsageRecord:
            return None, "undecodable"
        if not isinstance(usage, QuotaReached):
            return None, "not_in_feed"
        event = audit_event_from_quota(usage)
    else:
        try:
            event = audit_event(decode(record.value, declared=declared_type(record.headers)))
        except InvalidEvent:
            return None, "undecodable"
        if event is None:
            return None, "not_in_feed"
    return (
        FeedEvent(
            event_id=event.id,
            account_id=event.account_id,
            event_type=event.type,
            occurred_at=event.occurred_at,
            payload=payload_of(event),
        ),
        "in_feed",
    )


def next_offsets(records: Iterable[KafkaRecord]) -> dict[tuple[str, int], int]:
    """The offset to read next of every partition in `records`."""
    offsets: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        offsets[key] = max(offsets.get(key, 0), record.offset + 1)
    return offsets

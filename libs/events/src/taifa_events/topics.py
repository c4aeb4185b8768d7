"""Kafka topic names and the partition-key rule shared by producers and consumers."""

from __future__ import annotations

SMTP_CREDENTIALS = "taifa.smtp-credentials"
DOMAINS = "taifa.domains"
ACCOUNTS = "taifa.accounts"

ALL_TOPICS: tuple[str, ...] = (SMTP_CREDENTIALS, DOMAINS, ACCOUNTS)

# Usage windows and quota notices (taifa_events.usage): not events of record, so not among ALL_TOPICS (the event
# store never holds them); a topic of its own with a finite retention, keyed by credential id, produced and consumed
# by the projector.
USAGE_TOPIC = "taifa.smtp-usage"

DLQ_SUFFIX = ".dlq"


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic paired with `topic` (e.g. `taifa.smtp-credentials.dlq`)."""
    return topic + DLQ_SUFFIX

"""Kafka topic names and the partition-key rule shared by producers and consumers."""

from __future__ import annotations

SMTP_CREDENTIALS = "taifa.smtp-credentials"
DOMAINS = "taifa.domains"
ACCOUNTS = "taifa.accounts"

ALL_TOPICS: tuple[str, ...] = (SMTP_CREDENTIALS, DOMAINS, ACCOUNTS)

DLQ_SUFFIX = ".dlq"


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic paired with `topic` (e.g. `taifa.smtp-credentials.dlq`)."""
    return topic + DLQ_SUFFIX

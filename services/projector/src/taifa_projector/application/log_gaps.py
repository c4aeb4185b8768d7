"""Partitions stopped at a retention gap: logged once, exposed as a metric, and the instance not ready.

A gap (`domain.log_positions.LogGap`) means events were deleted from Kafka before this group applied
them. Skipping to the log start would lose them for good (a lost `CredentialDeactivated` is a revoked
credential that still logs in), so the partition is paused instead and stays paused while this instance
owns it. The operator's way out: stop the projectors, `taifa-projector rebuild --from event-store` (it
replays the log of record and moves the recorded offsets up to the log start), start them again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from taifa_projector import metrics
from taifa_projector.domain.log_positions import LogGap, TopicPartitionKey

log = logging.getLogger(__name__)

REMEDY = (
    "the partition is stopped and this projector reports not ready; to repair: scale the projectors to 0, "
    "run `taifa-projector rebuild --from event-store`, start them again (and give the topic unlimited retention)"
)


class LogGaps:
    """The gaps of the partitions this instance owns."""

    def __init__(self) -> None:
        self.gaps: dict[TopicPartitionKey, LogGap] = {}

    def found(self, gap: LogGap) -> None:
        topic, partition = gap.partition
        log.error("log gap on %s; %s", gap.describe(), REMEDY)
        metrics.LOG_GAP.labels(topic, str(partition)).set(1)
        self.gaps[gap.partition] = gap

    def released(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """Partitions no longer owned (a rebalance): their new owner checks them itself."""
        for key in partitions:
            if self.gaps.pop(key, None) is not None:
                metrics.LOG_GAP.labels(key[0], str(key[1])).set(0)

    def __bool__(self) -> bool:
        return bool(self.gaps)

"""Where a projector may read a partition from, given what it recorded and where the log now starts.

Two different things make a recorded offset unusable, and they must not be confused:

- a NEW log: the recorded offset lies past the end of the partition (a topic deleted and recreated, or the
  local broker, which keeps everything in memory, restarted). The new log starts at 0 and holds the events
  the publisher replays from the event store: read it from the beginning (duplicates are absorbed);
- a GAP: the log starts after the recorded offset (retention deleted records this group never applied),
  or a new log whose first records are already deleted. Reading on from the log start would silently skip
  events, a `CredentialDeactivated` among them; the partition stops until an operator rebuilds the read
  side from the event store.
"""

from __future__ import annotations

from dataclasses import dataclass

# A partition of a topic: (topic, partition number).
TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True)
class Resume:
    """Read from `offset`."""

    offset: int


@dataclass(frozen=True)
class FromBeginning:
    """Read the whole partition from its first record (at offset 0)."""


@dataclass(frozen=True)
class LogGap:
    """Events this group never applied were deleted from the partition: do not read it."""

    partition: TopicPartitionKey
    recorded: int | None  # the next offset this group recorded (None: it recorded none)
    log_start: int

    def describe(self) -> str:
        topic, partition = self.partition
        recorded = "no offset recorded" if self.recorded is None else f"recorded offset {self.recorded}"
        return (
            f"{topic}[{partition}]: {recorded}, but the log starts at offset {self.log_start}: events were deleted "
            "(retention) before this projector group applied them"
        )


Position = Resume | FromBeginning | LogGap


def on_assignment(partition: TopicPartitionKey, recorded: int | None, log_start: int) -> Position:
    """Where to start a partition just assigned, from the offset PostgreSQL recorded and the log start.

    A recorded offset past the end of the log is not decided here (the end offset the local broker reports
    lags behind): the first fetch answers "out of range" and `on_out_of_range` decides.
    """
    if recorded is None:
        return FromBeginning() if log_start == 0 else LogGap(partition, None, log_start)
    if recorded < log_start:
        return LogGap(partition, recorded, log_start)
    return Resume(recorded)


def on_out_of_range(partition: TopicPartitionKey, fetch_offset: int, log_start: int) -> Position:
    """A fetch at `fetch_offset` was out of range: below the log start (a gap) or past its end (a new log)."""
    if fetch_offset < log_start:
        return LogGap(partition, fetch_offset, log_start)
    if log_start == 0:
        return FromBeginning()
    # Past the end of a log that does not start at 0: a new log whose first records are already gone.
    return LogGap(partition, fetch_offset, log_start)


class LogNotFromZero(Exception):
    """A Kafka rebuild needs every partition from offset 0; some start later (retention deleted records)."""

    def __init__(self, starts: dict[TopicPartitionKey, int]) -> None:
        self.starts = {tp: start for tp, start in sorted(starts.items()) if start > 0}
        where = ", ".join(
            f"{topic}[{partition}] starts at offset {start}" for (topic, partition), start in self.starts.items()
        )
        super().__init__(
            f"cannot rebuild from Kafka: {where}, not 0 (retention deleted its first records, so the log no longer "
            "holds the whole history); nothing was changed: rebuild with `--from event-store`"
        )

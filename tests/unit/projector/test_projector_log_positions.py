"""Where a partition is read from: a retention gap stops it, a new log is replayed from 0 (no I/O)."""

from __future__ import annotations

from prometheus_client import REGISTRY
from taifa_projector.application.log_gaps import LogGaps
from taifa_projector.domain.log_positions import (
    FromBeginning,
    LogGap,
    LogNotFromZero,
    Resume,
    on_assignment,
    on_out_of_range,
)

TP = ("taifa.smtp-credentials", 4)


def test_a_recorded_offset_inside_the_log_is_resumed() -> None:
    assert on_assignment(TP, 120, 0) == Resume(120)
    assert on_assignment(TP, 120, 120) == Resume(120)  # everything before it was applied
    assert on_assignment(TP, 120, 100) == Resume(120)


def test_a_recorded_offset_below_the_log_start_is_a_gap_never_a_skip() -> None:
    assert on_assignment(TP, 99, 100) == LogGap(TP, 99, 100)
    assert on_assignment(TP, 0, 1) == LogGap(TP, 0, 1)


def test_no_recorded_offset_reads_from_zero_but_is_a_gap_when_the_log_no_longer_starts_there() -> None:
    assert on_assignment(TP, None, 0) == FromBeginning()
    assert on_assignment(TP, None, 5000) == LogGap(TP, None, 5000)


def test_out_of_range_below_the_start_is_a_gap_and_past_the_end_of_a_new_log_a_replay() -> None:
    # Retention deleted records while this group was behind: a gap.
    assert on_out_of_range(TP, 40, 100) == LogGap(TP, 40, 100)
    # Past the end of a log that starts at 0: a new log (recreated topic, the local broker restarted).
    assert on_out_of_range(TP, 5000, 0) == FromBeginning()
    # Past the end of a log whose first records are already gone: replaying it would skip those.
    assert on_out_of_range(TP, 5000, 30) == LogGap(TP, 5000, 30)


def test_a_gap_describes_the_partition_its_recorded_offset_and_the_log_start() -> None:
    text = LogGap(TP, 99, 100).describe()
    assert "taifa.smtp-credentials[4]" in text and "recorded offset 99" in text and "starts at offset 100" in text
    assert "no offset recorded" in LogGap(TP, None, 7).describe()


def test_the_kafka_rebuild_refusal_names_each_trimmed_partition_and_the_way_out() -> None:
    message = str(LogNotFromZero({("taifa.domains", 0): 0, ("taifa.domains", 2): 1500}))
    assert "taifa.domains[2] starts at offset 1500" in message
    assert "taifa.domains[0]" not in message
    assert "--from event-store" in message and "nothing was changed" in message


def _gauge(topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value("taifa_projector_log_gap", {"topic": topic, "partition": str(partition)})


def test_a_gap_sets_the_metric_and_makes_the_instance_not_ready_until_the_partition_leaves_it(caplog) -> None:
    gaps = LogGaps()
    assert not gaps
    gap = LogGap(("unit-gap-topic", 1), 10, 25)
    gaps.found(gap)
    assert gaps and _gauge("unit-gap-topic", 1) == 1
    assert any(
        r.levelname == "ERROR" and "unit-gap-topic[1]" in r.getMessage() and "--from event-store" in r.getMessage()
        for r in caplog.records
    )
    gaps.released([("unit-gap-topic", 0)])  # another partition: no change
    assert gaps
    gaps.released([("unit-gap-topic", 1)])
    assert not gaps and _gauge("unit-gap-topic", 1) == 0

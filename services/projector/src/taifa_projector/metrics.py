"""The projector's Prometheus metrics, defined once (served on /metrics by the health server)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_APPLIED = Counter(
    "taifa_projector_events_applied_total", "Events whose effects were committed (first delivery).", ["event_type"]
)
EVENTS_DUPLICATE = Counter(
    "taifa_projector_events_duplicate_total", "Redelivered events recognised as already applied (absorbed)."
)
DLQ_RECORDS = Counter("taifa_projector_dlq_total", "Records sent to a dead-letter topic.", ["topic", "reason"])
BATCH_SECONDS = Histogram(
    "taifa_projector_batch_apply_seconds",
    "Time to apply one batch to PostgreSQL and Redis.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LAG = Gauge("taifa_projector_lag", "Records behind the partition's high-water mark.", ["topic", "partition"])
LOG_GAP = Gauge(
    "taifa_projector_log_gap",
    "1 while a partition is stopped because its log starts after the offset this group recorded (events deleted "
    "by retention before they were applied); the projector is not ready until rebuilt from the event store.",
    ["topic", "partition"],
)
TRANSIENT_FAILURES = Counter(
    "taifa_projector_transient_failures_total", "Transient failures retried with back-off.", ["store"]
)
CACHE_REBUILDS = Counter("taifa_projector_cache_rebuilds_total", "Auth-cache rebuilds from the read model.", ["reason"])
REBUILDS = Counter("taifa_projector_rebuilds_total", "Full read-model rebuilds.", ["source"])
PROCESSED_PRUNED = Counter(
    "taifa_projector_processed_ids_pruned_total", "Processed-event ids forgotten once far behind the newest position."
)
CACHE_WRITE_REFUSED = Counter(
    "taifa_projector_cache_write_refused_total",
    "Auth-cache writes Redis refused after the read model committed (entries deleted, cache marked incomplete).",
    ["error"],
)
CACHE_REBUILD_FAILURES = Counter(
    "taifa_projector_cache_rebuild_failures_total", "Auth-cache rebuilds from the read model that failed (retried)."
)
CREDENTIALS_QUARANTINED = Counter(
    "taifa_projector_credentials_quarantined_total",
    "Credentials revoked because their deactivation could not be applied to the read model (dead-lettered).",
)
CACHE_REGRESSIONS = Counter(
    "taifa_projector_cache_watermark_regressions_total",
    "Batches that found the auth cache's watermark below one this instance had seen (Redis went back in time).",
)
CACHE_OFFSETS_BEHIND = Counter(
    "taifa_projector_cache_offsets_behind_total",
    "Batches that found the auth cache behind what the read model had committed before them (Redis lost writes, "
    "an instance died or handed over between its two commits, a lost commit answer) and deleted its epoch.",
)

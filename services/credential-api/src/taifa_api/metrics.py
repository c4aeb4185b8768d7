"""Prometheus metrics of the API process (one registry: the default)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter("taifa_api_http_requests_total", "HTTP requests answered.", ["method", "route", "status"])
HTTP_LATENCY = Histogram("taifa_api_http_request_seconds", "HTTP request latency.", ["method", "route"])
API_KEY_LOOKUPS = Counter("taifa_api_key_lookups_total", "API keys looked up in the database (well-formed only).")
AUTH_FAILURES = Counter("taifa_api_auth_failures_total", "Requests refused with 401.")
RATE_LIMITED = Counter("taifa_api_rate_limited_total", "Requests refused with 429.")
AUTH_THROTTLED = Counter(
    "taifa_api_auth_throttled_total",
    "Requests refused with 429 before authentication: too many failures from the address.",
)
RATE_LIMIT_FALLBACKS = Counter(
    "taifa_api_rate_limit_fallbacks_total", "Rate-limit decisions taken per process because Redis was unreachable."
)
EVENTS_APPENDED = Counter("taifa_api_events_appended_total", "Events appended to the event store.", ["event_type"])
PROJECTION_WAITS = Counter("taifa_api_projection_waits_total", "Read-your-writes waits by outcome.", ["outcome"])
PUBLISHED = Counter("taifa_api_outbox_published_total", "Events sent to Kafka by the outbox publisher.")
PUBLISHED_POSITION = Gauge("taifa_api_outbox_published_position", "Last event-store position sent to Kafka.")
PUBLISHER_LEADER = Gauge("taifa_api_outbox_leader", "1 while this process holds the publisher lock.")

# The webhook dispatcher (`taifa-webhooks`, issue 17).
WEBHOOK_RECORDS = Counter(
    "taifa_webhooks_records_total", "Kafka records read by the webhook dispatcher, by outcome.", ["outcome"]
)
WEBHOOK_DELIVERIES_CREATED = Counter("taifa_webhooks_deliveries_created_total", "Webhook deliveries created.")
WEBHOOK_ATTEMPTS = Counter(
    "taifa_webhooks_attempts_total", "Webhook delivery attempts by outcome (delivered, failed, refused).", ["outcome"]
)
WEBHOOK_ATTEMPT_SECONDS = Histogram("taifa_webhooks_attempt_seconds", "Duration of one webhook delivery attempt.")
WEBHOOK_EVENT_TO_DELIVERY_SECONDS = Histogram(
    "taifa_webhooks_event_to_delivery_seconds",
    "From the event to its successful delivery (retries included).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 36000, 86400, 259200),
)
WEBHOOK_IN_FLIGHT = Gauge("taifa_webhooks_in_flight", "Webhook attempts under way (at most one per endpoint).")
WEBHOOK_ENDPOINTS_DISABLED = Counter(
    "taifa_webhooks_endpoints_disabled_total", "Endpoints disabled after their retry schedule was spent."
)
WEBHOOK_CONSUMER_POSITION = Gauge(
    "taifa_webhooks_consumer_next_offset", "Next offset the webhook dispatcher reads.", ["topic", "partition"]
)

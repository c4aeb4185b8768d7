"""Prometheus metrics of the relay (no usernames, addresses or secrets in labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SESSIONS = Gauge("taifa_relay_open_sessions", "SMTP sessions open now")
SESSIONS_TOTAL = Counter("taifa_relay_sessions_total", "SMTP sessions accepted", ["port"])
AUTH_RESULTS = Counter("taifa_relay_auth_total", "AUTH attempts by result", ["result"])
AUTH_LOOKUPS = Counter("taifa_relay_auth_lookups_total", "Auth-cache lookups made for AUTH")
MESSAGES = Counter("taifa_relay_messages_total", "Messages relayed upstream and accepted")
MESSAGE_BYTES = Counter("taifa_relay_message_bytes_total", "Bytes of messages relayed upstream")
REJECTIONS = Counter("taifa_relay_rejections_total", "Commands or messages refused, by reason", ["reason"])
UPSTREAM_LATENCY = Histogram(
    "taifa_relay_upstream_seconds",
    "Time of one upstream transaction",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
AUTH_SECONDS = Histogram(
    "taifa_relay_auth_seconds",
    "Server-side time of one AUTH check (cache lookup, hashing, comparison)",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1),
)

# Usage and sending limits (issue 16): refusals by usage reason (policy, limits, quota, suspended, upstream, auth_*),
# how full the accounts' daily quotas are at each counted recipient, and the 80 %/100 % crossings announced.
REFUSALS = Counter("taifa_relay_refusals_total", "Refusals by usage reason", ["reason"])
QUOTA_USED = Histogram(
    "taifa_relay_quota_used_ratio",
    "Fraction of the account's daily quota used, observed at each recipient counted",
    buckets=(0.1, 0.25, 0.5, 0.8, 0.9, 0.95, 1.0),
)
QUOTA_THRESHOLDS = Counter(
    "taifa_relay_quota_thresholds_total", "Accounts' daily quotas crossing 80 % / 100 % (notices)", ["percent"]
)

# Children bound once: `labels()` takes a lock and a dict lookup on every call.
AUTH_SUCCESS = AUTH_RESULTS.labels(result="success")
AUTH_FAILURE = AUTH_RESULTS.labels(result="failure")
SESSIONS_BY_PORT = {port: SESSIONS_TOTAL.labels(port=port) for port in ("smtps", "submission")}

# Whether the auth cache can be trusted and Redis accepts the relay's own writes (both fail loudly).
CACHE_TRUSTED = Gauge(
    "taifa_relay_auth_cache_trusted",
    "1 while the auth cache's epoch exists and its watermark has not gone backwards; 0: AUTH answers 454",
)
REDIS_WRITABLE = Gauge("taifa_relay_redis_writable", "1 while Redis accepts the relay's failure-counter writes")
REDIS_WRITES_REFUSED = Counter(
    "taifa_relay_redis_writes_refused_total", "Writes Redis refused (NOPERM, READONLY): throttling cannot count"
)

# The application's decision outcomes and the counter each one adds to (bound once, on first use).
_REJECTION_OUTCOMES = frozenset({"end-of-data-recheck-unavailable", "limits-unavailable"})
_OUTCOME_COUNTERS: dict[str, Counter] = {"success": AUTH_SUCCESS, "failure": AUTH_FAILURE}


def count_outcomes(outcomes: tuple[str, ...]) -> None:
    """Count what a decision of `taifa_relay.application.submission` names: AUTH results by result, the
    end-of-DATA re-check that could not be made as a rejection."""
    for outcome in outcomes:
        counter = _OUTCOME_COUNTERS.get(outcome)
        if counter is None:
            if outcome.startswith("refused:"):
                counter = REFUSALS.labels(reason=outcome.removeprefix("refused:"))
            elif outcome in _REJECTION_OUTCOMES:
                counter = REJECTIONS.labels(reason=outcome)
            else:
                counter = AUTH_RESULTS.labels(result=outcome)
            _OUTCOME_COUNTERS[outcome] = counter
        counter.inc()

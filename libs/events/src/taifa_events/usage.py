"""Usage counting and sending limits: the Redis keys the relay counts in, and the records on the usage topic.

Counters are not events of record (DESIGN, round 2, point 13). The relay counts in Redis, atomically and shared
by every pod (HINCRBY into one hash per credential per UTC hour), pipelined with the round trips it already makes.
The projector's flusher snapshots each hash and publishes it as a signed `UsageWindow` on `USAGE_TOPIC` (keyed by
credential id). A window carries the hour's TOTALS so far: counters only grow, so the read model applies a window
with GREATEST(stored, new) per counter, per refusal reason and per last-use time. Applying is idempotent and
order-independent (a redelivered, replayed or older snapshot changes nothing), and two pods' increments have
already added up in Redis before any snapshot is taken.

Limits: check-and-count in one Lua script per key (INCRBY n; over the limit -> DECRBY n and refuse), so N relay pods
together never exceed a limit by more than the recipients already in flight. Day counters roll at 00:00 UTC.

Pure: no I/O, no clock (callers pass the time).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Final, Literal, get_args
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from taifa_events.topics import USAGE_TOPIC

__all__ = [
    "ACCOUNT_QUOTA_TTL_SECONDS",
    "DAY_LIMIT_TTL_SECONDS",
    "DEFAULT_PLAN",
    "FIELD_ACCOUNT_ID",
    "FIELD_AUTH_FAILURES",
    "FIELD_AUTH_SUCCESSES",
    "FIELD_BYTES",
    "FIELD_GENERATION",
    "FIELD_LAST_SECRET_ID",
    "FIELD_LAST_USED_AT",
    "FIELD_LAST_USED_IP",
    "FIELD_MESSAGES",
    "FIELD_RECIPIENTS",
    "GENERATION_PATTERN",
    "MINUTE_LIMIT_TTL_SECONDS",
    "PLAN_DAILY_QUOTAS",
    "QUOTA_NOTICES_KEY",
    "QUOTA_THRESHOLDS",
    "REFUSAL_REASONS",
    "REFUSED_PREFIX",
    "SECRET_LAST_USED_PREFIX",
    "USAGE_APPLIED_PREFIX",
    "USAGE_APPLIED_TTL_SECONDS",
    "USAGE_KEY_PREFIX",
    "USAGE_PENDING_KEY",
    "USAGE_TOPIC",
    "USAGE_TTL_SECONDS",
    "WINDOW_SECONDS",
    "InvalidUsageRecord",
    "QuotaNotice",
    "QuotaReached",
    "UsageWindow",
    "account_quota_key",
    "crossed_threshold",
    "daily_quota",
    "day_limit_key",
    "decode_usage_record",
    "encode_usage_record",
    "minute_limit_key",
    "minute_start",
    "parse_pending_member",
    "pending_member",
    "refused_field",
    "secret_last_used_field",
    "usage_applied_key",
    "usage_key",
    "utc_day",
    "window_from_hash",
    "window_start",
]

WINDOW_SECONDS: Final = 3600
USAGE_TTL_SECONDS: Final = 3 * 86400  # EXPIRE of each usage hash: long enough for any flusher outage we tolerate
MINUTE_LIMIT_TTL_SECONDS: Final = 120
DAY_LIMIT_TTL_SECONDS: Final = 2 * 86400
ACCOUNT_QUOTA_TTL_SECONDS: Final = 2 * 86400

USAGE_KEY_PREFIX: Final = "taifa:usage:"
USAGE_PENDING_KEY: Final = "taifa:usage:pending"  # ZSET: member "<credential_id>:<window_start>", score window_start
QUOTA_NOTICES_KEY: Final = "taifa:usage:quota-notices"  # LIST of QuotaNotice JSON (LPUSH by relay, RPOP by flusher)
# HASH per relay process, field `seq`: the sequence number of the last usage batch Redis applied for it (each batch
# is applied once).
USAGE_APPLIED_PREFIX: Final = "taifa:usage:applied:"
USAGE_APPLIED_TTL_SECONDS: Final = 86400

# Hash fields. Counters (HINCRBY):
FIELD_MESSAGES: Final = "messages"
FIELD_RECIPIENTS: Final = "recipients"
FIELD_BYTES: Final = "bytes"
FIELD_AUTH_SUCCESSES: Final = "auth_successes"
FIELD_AUTH_FAILURES: Final = "auth_failures"
REFUSED_PREFIX: Final = "refused:"
# Last use (HSET, latest wins):
FIELD_LAST_USED_AT: Final = "last_used_at"  # unix seconds
FIELD_LAST_USED_IP: Final = "last_used_ip"
FIELD_LAST_SECRET_ID: Final = "last_secret_id"  # noqa: S105 - a field name
SECRET_LAST_USED_PREFIX: Final = "secret_last_used:"  # noqa: S105 - field name prefix + secret id -> unix seconds
FIELD_ACCOUNT_ID: Final = "account_id"  # HSET by the relay (it knows it from the cache entry): the record needs it
# Set once, by the relay that creates the hash: a window counted again from zero after Redis lost the hash gets a new
# generation, so the read model keeps it beside the one already published instead of hiding it under GREATEST.
FIELD_GENERATION: Final = "generation"
GENERATION_PATTERN: Final = r"^[A-Za-z0-9._:-]{0,64}$"
_GENERATION: Final = re.compile(GENERATION_PATTERN)

RefusalReason = Literal[
    "policy",
    "limits",
    "quota",
    "suspended",
    "upstream",
    "auth_secret",
    "auth_cidr",
    "auth_expired",
    "auth_inactive",
    "throttled",
]
REFUSAL_REASONS: Final[tuple[str, ...]] = get_args(RefusalReason)

PLAN_DAILY_QUOTAS: Final[Mapping[str, int]] = {"free": 200, "starter": 10000, "pro": 100000, "enterprise": 1000000}
# An entry without a plan (written before plans reached the cache) gets the smallest quota: the safe default.
DEFAULT_PLAN: Final = "free"
QUOTA_THRESHOLDS: Final[tuple[int, ...]] = (80, 100)


def window_start(ts: float) -> int:
    """Unix seconds of the UTC hour that holds `ts` (the window a count at `ts` goes into)."""
    return int(ts) // WINDOW_SECONDS * WINDOW_SECONDS


def minute_start(ts: float) -> int:
    """Unix seconds of the minute that holds `ts` (the per-minute limit's counter)."""
    return int(ts) // 60 * 60


def utc_day(ts: float) -> str:
    """`yyyymmdd` of the UTC day that holds `ts` (day limits and quotas roll at 00:00 UTC)."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y%m%d")


def usage_key(credential_id: UUID | str, window: int) -> str:
    return f"{USAGE_KEY_PREFIX}{credential_id}:{window}"


def refused_field(reason: str) -> str:
    return REFUSED_PREFIX + reason


def secret_last_used_field(secret_id: UUID | str) -> str:
    return f"{SECRET_LAST_USED_PREFIX}{secret_id}"


def usage_applied_key(writer_id: str) -> str:
    """The key holding the last usage batch applied for one writer (a relay process)."""
    return f"{USAGE_APPLIED_PREFIX}{writer_id}"


def pending_member(credential_id: UUID | str, window: int) -> str:
    return f"{credential_id}:{window}"


def parse_pending_member(member: str | bytes) -> tuple[UUID, int] | None:
    """(credential id, window start) of a `USAGE_PENDING_KEY` member; None when it is damaged."""
    text = member.decode() if isinstance(member, bytes) else member
    credential, _, window = text.rpartition(":")
    try:
        return UUID(credential), int(window)
    except ValueError:
        return None


def minute_limit_key(credential_id: UUID | str, minute: int) -> str:
    return f"taifa:limit:{credential_id}:m:{minute}"


def day_limit_key(credential_id: UUID | str, day: str) -> str:
    return f"taifa:limit:{credential_id}:d:{day}"


def account_quota_key(account_id: UUID | str, day: str) -> str:
    return f"taifa:quota:{account_id}:{day}"


def daily_quota(plan: str | None, quotas: Mapping[str, int] = PLAN_DAILY_QUOTAS) -> int:
    """The plan's recipients per UTC day; an unknown or missing plan gets the default plan's (smallest) quota."""
    if plan is not None and plan in quotas:
        return quotas[plan]
    return quotas.get(DEFAULT_PLAN, PLAN_DAILY_QUOTAS[DEFAULT_PLAN])


def crossed_threshold(before: int, after: int, quota: int) -> int | None:
    """The highest threshold percent (80, 100) that the count crossed going from `before` to `after`, if any.

    Only the INCR that takes the count across a threshold sees this, so exactly one pod reports it."""
    crossed = None
    for percent in QUOTA_THRESHOLDS:
        limit = quota * percent / 100
        if before < limit <= after:
            crossed = percent
    return crossed


class QuotaNotice(BaseModel):
    """What the relay LPUSHes to `QUOTA_NOTICES_KEY` when an account's day count crosses a threshold."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    account_id: UUID
    credential_id: UUID
    day: str = Field(pattern=r"^\d{8}$")
    percent: int
    count: int = Field(ge=0)
    quota: int = Field(ge=0)
    at: AwareDatetime


class UsageWindow(BaseModel):
    """One credential's counts for one UTC hour, as totals so far (apply with GREATEST; see the module docstring).
    `generation` names the Redis hash the totals were read from: a hash made again after Redis lost it starts from
    zero under a new generation, and the windows of both generations add up ("": from a relay before generations)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    credential_id: UUID
    account_id: UUID
    window_start: AwareDatetime
    generation: str = Field(default="", pattern=GENERATION_PATTERN)
    messages: int = Field(default=0, ge=0)
    recipients: int = Field(default=0, ge=0)
    bytes: int = Field(default=0, ge=0)
    auth_successes: int = Field(default=0, ge=0)
    auth_failures: int = Field(default=0, ge=0)
    refused: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    last_used_at: AwareDatetime | None = None
    last_used_ip: str | None = None
    secrets_last_used: dict[UUID, AwareDatetime] = Field(default_factory=dict)
    reported_at: AwareDatetime


class QuotaReached(QuotaNotice):
    """An account's daily quota crossed 80 % or 100 % (the audit feed shows it as `smtp_credential.quota_reached`):
    the relay's notice, as the flusher publishes it on the usage topic."""


class _WindowRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["UsageWindow"]
    data: UsageWindow


class _QuotaRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["QuotaReached"]
    data: QuotaReached


_RECORD: TypeAdapter[_WindowRecord | _QuotaRecord] = TypeAdapter(
    Annotated[_WindowRecord | _QuotaRecord, Field(discriminator="type")]
)


class InvalidUsageRecord(ValueError):
    """A usage-topic value that is not a known record (the consumer dead-letters it)."""


def encode_usage_record(record: UsageWindow | QuotaReached) -> bytes:
    """The Kafka value: `{"type": "UsageWindow"|"QuotaReached", "data": {...}}`, compact JSON, sorted keys."""
    kind = "UsageWindow" if isinstance(record, UsageWindow) else "QuotaReached"
    payload = {"type": kind, "data": record.model_dump(mode="json")}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def decode_usage_record(value: bytes | None) -> UsageWindow | QuotaReached:
    """Parse a usage-topic value; raises InvalidUsageRecord (unknown type, bad JSON, bad fields)."""
    if value is None:
        raise InvalidUsageRecord("empty usage record")
    try:
        return _RECORD.validate_json(value).data
    except ValidationError as exc:
        raise InvalidUsageRecord(f"not a usage record: {exc.error_count()} error(s)") from None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _moment(seconds: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(float(seconds)), UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _count(value: str) -> int:
    try:
        return max(0, int(value))
    except ValueError:
        return 0


def window_from_hash(
    credential_id: UUID,
    window: int,
    mapping: Mapping[str, str] | Mapping[bytes, bytes],
    reported_at: datetime,
    account_id: UUID | None = None,
) -> UsageWindow | None:
    """The `UsageWindow` of a usage hash (HGETALL result). The hash's `account_id` wins over the argument;
    None when neither names the account (the record could not be attributed) or the hash is empty."""
    if not mapping:
        return None
    text = {_text(k): _text(v) for k, v in mapping.items()}
    try:
        account = UUID(text[FIELD_ACCOUNT_ID]) if text.get(FIELD_ACCOUNT_ID) else account_id
    except ValueError:
        account = account_id
    if account is None:
        return None
    refused = {
        name.removeprefix(REFUSED_PREFIX): _count(value)
        for name, value in text.items()
        if name.startswith(REFUSED_PREFIX) and name != REFUSED_PREFIX
    }
    secrets: dict[UUID, datetime] = {}
    for name, value in text.items():
        if name.startswith(SECRET_LAST_USED_PREFIX):
            moment = _moment(value)
            try:
                secret_id = UUID(name.removeprefix(SECRET_LAST_USED_PREFIX))
            except ValueError:
                continue
            if moment is not None:
                secrets[secret_id] = moment
    last_used = _moment(text[FIELD_LAST_USED_AT]) if text.get(FIELD_LAST_USED_AT) else None
    generation = text.get(FIELD_GENERATION, "")
    return UsageWindow(
        credential_id=credential_id,
        account_id=account,
        window_start=datetime.fromtimestamp(window, UTC),
        generation=generation if _GENERATION.fullmatch(generation) else "",
        messages=_count(text.get(FIELD_MESSAGES, "0")),
        recipients=_count(text.get(FIELD_RECIPIENTS, "0")),
        bytes=_count(text.get(FIELD_BYTES, "0")),
        auth_successes=_count(text.get(FIELD_AUTH_SUCCESSES, "0")),
        auth_failures=_count(text.get(FIELD_AUTH_FAILURES, "0")),
        refused=refused,
        last_used_at=last_used,
        last_used_ip=text.get(FIELD_LAST_USED_IP) or None,
        secrets_last_used=secrets,
        reported_at=reported_at,
    )

"""The rule that applies a usage window to the stored one: GREATEST per counter, per refusal reason and per
last-use time (the PostgreSQL adapter runs the same rule in SQL; the fakes run this one).

A window on the usage topic carries its hour's totals so far, snapshot from one Redis hash that every relay pod
increments. Counters only grow, so the greater value is always the newer snapshot: applying a window twice, an
older one after a newer one, or a replay of the whole topic leaves the same totals (idempotent and
order-independent). The last-use address goes with the latest last-use time. Windows of another generation (the
hash made again from zero after Redis lost it) are stored beside, and readers add them up.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from taifa_events.usage import UsageWindow


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _greatest(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {key: max(a.get(key, 0), b.get(key, 0)) for key in sorted(a.keys() | b.keys())}


def _latest(a: dict[UUID, datetime], b: dict[UUID, datetime]) -> dict[UUID, datetime]:
    return {key: max(t for t in (a.get(key), b.get(key)) if t is not None) for key in a.keys() | b.keys()}


def merge_window(stored: UsageWindow | None, new: UsageWindow) -> UsageWindow:
    """The stored window after applying `new` (same credential, window start and generation)."""
    if stored is None:
        return new
    newer_use = new.last_used_at is not None and (stored.last_used_at is None or new.last_used_at > stored.last_used_at)
    return UsageWindow(
        credential_id=stored.credential_id,
        account_id=stored.account_id,
        window_start=stored.window_start,
        generation=stored.generation,
        messages=max(stored.messages, new.messages),
        recipients=max(stored.recipients, new.recipients),
        bytes=max(stored.bytes, new.bytes),
        auth_successes=max(stored.auth_successes, new.auth_successes),
        auth_failures=max(stored.auth_failures, new.auth_failures),
        refused=_greatest(stored.refused, new.refused),
        last_used_at=_later(stored.last_used_at, new.last_used_at),
        last_used_ip=new.last_used_ip if newer_use else stored.last_used_ip,
        secrets_last_used=_latest(stored.secrets_last_used, new.secrets_last_used),
        reported_at=max(stored.reported_at, new.reported_at),
    )

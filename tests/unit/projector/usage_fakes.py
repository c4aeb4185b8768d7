"""In-memory fakes of the usage ports (issue 16): Redis counters as the relays write them, the topic, the store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from uuid import UUID

from taifa_events import usage
from taifa_events.audit import AuditRow, audit_row_from_quota
from taifa_events.usage import QuotaReached, UsageWindow
from taifa_projector.application.ports import UsageCounters, UsagePublisher, UsageStore
from taifa_projector.domain.usage import merge_window


class InMemoryUsageCounters:
    """The relays' Redis usage keys: `count` is what a relay pod's HINCRBY/HSET/ZADD does."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.pending_set: set[tuple[UUID, int]] = set()
        self.notices: list[bytes] = []  # oldest first

    def count(self, credential_id: UUID, window: int, account_id: UUID, **increments: int) -> None:
        fields = self.hashes.setdefault(usage.usage_key(credential_id, window), {})
        fields[usage.FIELD_ACCOUNT_ID] = str(account_id)
        for name, n in increments.items():
            fields[name] = str(int(fields.get(name, "0")) + n)
        self.pending_set.add((credential_id, window))

    def last_use(self, credential_id: UUID, window: int, **values: str) -> None:
        self.hashes.setdefault(usage.usage_key(credential_id, window), {}).update(values)

    async def pending(self) -> list[tuple[UUID, int]]:
        return sorted(self.pending_set, key=lambda p: (str(p[0]), p[1]))

    async def read(self, credential_id: UUID, window: int) -> dict[str, str]:
        return dict(self.hashes.get(usage.usage_key(credential_id, window), {}))

    async def close(self, credential_id: UUID, window: int, published: Mapping[str, str]) -> bool:
        if self.hashes.get(usage.usage_key(credential_id, window), {}) != dict(published):
            return False
        self.pending_set.discard((credential_id, window))
        return True

    async def quota_notices(self, most: int) -> list[bytes]:
        return self.notices[:most]

    async def drop_quota_notices(self, notices: Sequence[bytes]) -> None:
        for notice in notices:
            if notice in self.notices:
                self.notices.remove(notice)


class InMemoryUsageTopic:
    """The usage topic: every published record, in order; `fail` makes the next publish raise."""

    def __init__(self) -> None:
        self.records: list[UsageWindow | QuotaReached] = []
        self.fail = False

    async def publish(self, records: Sequence[UsageWindow | QuotaReached]) -> None:
        if self.fail:
            raise ConnectionError("broker unavailable")
        self.records.extend(records)


class InMemoryUsageStore:
    """`rm_usage_windows` with the domain's merge rule (the SQL runs the same)."""

    def __init__(self) -> None:
        self.windows: dict[tuple[UUID, object, str], UsageWindow] = {}
        self.audit: dict[UUID, AuditRow] = {}  # the quota notices' rows of rm_audit_events

    async def apply_windows(self, windows: Sequence[UsageWindow], notices: Sequence[QuotaReached] = ()) -> None:
        for row in map(audit_row_from_quota, notices):
            self.audit.setdefault(row.id, row)
        for w in windows:
            key = (w.credential_id, w.window_start, w.generation)
            self.windows[key] = merge_window(self.windows.get(key), w)


def _implements_the_ports() -> None:
    """Never called: mypy checks that each fake is its port."""
    _counters: UsageCounters = InMemoryUsageCounters()
    _topic: UsagePublisher = InMemoryUsageTopic()
    _store: UsageStore = InMemoryUsageStore()

"""A checksum of the read side (sorted read-model rows, the credentials' secrets, auth-cache entries, domain-owner
keys with their positions): "rebuild equals live". The watermark and epoch are not part of it (a rebuild sets new
ones)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from taifa_projector.application.ports import AuthCacheWriter, ReadModelStore

CHECKED_TABLES = (
    ("rm_smtp_credentials", "credential_id"),
    ("rm_credential_secrets", "credential_id, secret_id"),
    ("rm_domains", "domain_id"),
    ("rm_usage_windows", "credential_id, window_start, generation"),  # kept by a rebuild (usage: not in the events)
    ("rm_audit_events", "id"),  # the audit feed (issue 17): rebuilt from the events, quota notices kept
)


def _digest(items: Any) -> str:
    return hashlib.sha256(json.dumps(items, default=str, sort_keys=True).encode()).hexdigest()


async def read_side_checksums(store: ReadModelStore, cache: AuthCacheWriter) -> dict[str, str]:
    """One SHA-256 per read model and for the auth cache, plus one over all of them."""
    sums = {table: _digest(await store.sorted_rows(table, key)) for table, key in CHECKED_TABLES}
    entries = await cache.all_entries()
    sums["auth_cache"] = _digest(sorted(entries.items()))
    sums["domain_owners"] = _digest(sorted((await cache.all_domain_owners()).items()))
    sums["all"] = _digest(sorted(sums.items()))
    return sums

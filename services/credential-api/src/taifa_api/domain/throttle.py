"""In-process token buckets keyed by a string: the API's limits that must neither wait for nor depend on Redis.

Two uses: failed authentication per client address, checked before any database lookup (an unauthenticated
flood must not cost one PostgreSQL query per request, and must keep working when Redis is down), and the
per-key request limit's fallback while Redis is unreachable (fail safe, not open). A bucket holds `capacity`
tokens and refills at `capacity` per `window_seconds`, so a steady client gets `capacity` per window and a
burst never more than `capacity`. Memory is bounded: at most `max_keys` buckets, the least recently touched
dropped first (a dropped bucket counts as full, which is what it would be after one idle window).
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from typing import Final

DEFAULT_MAX_KEYS: Final = 100_000


class TokenBuckets:
    def __init__(self, capacity: int, window_seconds: float, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self._capacity = float(max(1, capacity))
        self._rate = self._capacity / max(window_seconds, 0.001)  # tokens per second
        self._max_keys = max(1, max_keys)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, key: str, now: float) -> float:
        found = self._buckets.get(key)
        if found is None:
            return self._capacity
        tokens, stamp = found
        return min(self._capacity, tokens + max(0.0, now - stamp) * self._rate)

    def _store(self, key: str, tokens: float, now: float) -> None:
        if tokens >= self._capacity:
            self._buckets.pop(key, None)  # a full bucket is the default: no need to remember it
            return
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)

    def take(self, key: str, now: float) -> int:
        """Spend one token of `key`: 0 when spent, else the whole seconds until one is there again."""
        level = self._level(key, now)
        if level < 1.0:
            return max(1, math.ceil((1.0 - level) / self._rate))
        self._store(key, level - 1.0, now)
        return 0

    def give_back(self, key: str, now: float) -> None:
        """Return a token taken for an attempt that turned out not to count (e.g. it authenticated)."""
        self._store(key, min(self._capacity, self._level(key, now) + 1.0), now)


class RecentlySeen:
    """Keys seen within the last `ttl_seconds` (bounded like TokenBuckets). The guard keeps fingerprints of
    credentials that just authenticated here: their next requests skip the failed-auth reservation, so one
    client's parallel requests never look like failures, while each is still checked against the database."""

    def __init__(self, ttl_seconds: float, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self._ttl = ttl_seconds
        self._max_keys = max(1, max_keys)
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, key: bytes, now: float) -> bool:
        stamp = self._seen.get(key)
        if stamp is None:
            return False
        if now - stamp > self._ttl:
            del self._seen[key]
            return False
        return True

    def add(self, key: bytes, now: float) -> None:
        self._seen[key] = now
        self._seen.move_to_end(key)
        while len(self._seen) > self._max_keys:
            self._seen.popitem(last=False)

    def discard(self, key: bytes) -> None:
        self._seen.pop(key, None)


def client_group(address: str | None) -> str:
    """The key a client address is limited under: the IPv4 address, or the IPv6 /64 (one customer's network
    rotates freely inside its /64, so per-address counting there would limit nothing)."""
    if not address:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]  # not an IP (a test transport, a Unix socket): still one key per peer
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)

"""Usage: the flusher (relays' Redis counters -> signed windows on the usage topic) and the applier (usage topic ->
read model), both at-least-once and harmless to repeat (windows are totals, applied with GREATEST).

Flusher: every `interval` it snapshots each pending window's hash and publishes it as a `UsageWindow`. A window
is forgotten (removed from the pending set) only once it is closed (its hour plus `grace` has passed) and a
snapshot taken after closing was published, so its final totals always reach the topic. Quota notices are
published before they are removed from their list, each by its value: two instances that read the same notices
publish them twice (harmless: a notice's audit feed id is deterministic) and remove each once, and never a notice
neither of them read. Several projector instances may flush the same window: the duplicates change nothing.

Applier: every record must carry a valid signature of the event keyring (anyone able to produce to the topic
could otherwise forge usage); a record that does not verify or decode is dead-lettered, never applied.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from pydantic import ValidationError
from taifa_events import usage
from taifa_events.signing import USAGE_CONTEXTS, Keyring, SignatureRefused
from taifa_events.usage import QuotaNotice, QuotaReached, UsageWindow

from taifa_projector.application.ports import DeadLetters, Record, UsageCounters, UsagePublisher, UsageStore

log = logging.getLogger(__name__)

REASON_INVALID_USAGE = "invalid_usage_record"
DEFAULT_GRACE_SECONDS = 60  # how long after its hour a window may still be counted into (clock skew, slow sessions)
NOTICES_PER_FLUSH = 500


class UsageApplier:
    """Verifies, decodes and applies a batch of usage-topic records."""

    def __init__(self, store: UsageStore, dead_letters: DeadLetters, keyring: Keyring) -> None:
        self.store = store
        self.dead_letters = dead_letters
        self.keyring = keyring

    async def apply(self, records: Sequence[Record]) -> tuple[int, int]:
        """Apply the batch's windows, and its quota notices to the audit feed (`smtp_credential.quota_reached`);
        returns (windows applied, records dead-lettered)."""
        windows: list[UsageWindow] = []
        notices: list[QuotaReached] = []
        rejected = 0
        for record in records:
            try:
                self.keyring.verify(record.value, record.signature, USAGE_CONTEXTS)
                decoded = usage.decode_usage_record(record.value)
            except SignatureRefused as exc:
                await self.dead_letters.send(record, reason=exc.reason, error=str(exc), attempts=1)
                rejected += 1
                continue
            except usage.InvalidUsageRecord as exc:
                await self.dead_letters.send(record, reason=REASON_INVALID_USAGE, error=str(exc), attempts=1)
                rejected += 1
                continue
            if isinstance(decoded, UsageWindow):
                windows.append(decoded)
            else:
                notices.append(decoded)
        if windows or notices:
            await self.store.apply_windows(windows, notices)
        return len(windows), rejected


class UsageFlusher:
    """One flush: snapshot the pending windows and the quota notices onto the usage topic."""

    def __init__(
        self, counters: UsageCounters, publisher: UsagePublisher, *, grace_seconds: int = DEFAULT_GRACE_SECONDS
    ) -> None:
        self.counters = counters
        self.publisher = publisher
        self.grace_seconds = grace_seconds

    async def flush(self, now: datetime) -> int:
        """Publish every pending window and quota notice; returns how many records were published."""
        published = await self._windows(now)
        return published + await self._notices()

    async def _windows(self, now: datetime) -> int:
        moment = now.timestamp()
        snapshots: list[UsageWindow] = []
        closed: list[tuple[UUID, int, dict[str, str]]] = []
        for credential_id, window in await self.counters.pending():
            # Closed before the snapshot is read: the snapshot then holds the window's final totals, unless a
            # relay's batch comes later still (it was kept from Redis): `close` then keeps the window pending.
            is_closed = window + usage.WINDOW_SECONDS + self.grace_seconds < moment
            fields = await self.counters.read(credential_id, window)
            snapshot = usage.window_from_hash(credential_id, window, fields, now)
            if snapshot is not None:
                snapshots.append(snapshot)
            if is_closed:
                closed.append((credential_id, window, fields))
        if snapshots:
            await self.publisher.publish(snapshots)
        for credential_id, window, fields in closed:
            await self.counters.close(credential_id, window, fields)
        return len(snapshots)

    async def _notices(self) -> int:
        texts = await self.counters.quota_notices(NOTICES_PER_FLUSH)
        if not texts:
            return 0
        records: list[UsageWindow | QuotaReached] = []
        for text in texts:
            try:
                notice = QuotaNotice.model_validate_json(text)
            except ValidationError:
                log.warning("a damaged quota notice was dropped")
                continue
            records.append(QuotaReached(**notice.model_dump()))
        if records:
            await self.publisher.publish(records)
        await self.counters.drop_quota_notices(texts)
        return len(records)

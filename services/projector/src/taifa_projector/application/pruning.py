"""Keep `projector_processed_events` bounded: forget the ids of events far behind the newest one applied.

The table holds one row per applied event so that a redelivery is recognised and counted as a duplicate.
Correctness never depends on it (every write is conditional on the event's position), so ids more than
`keep_positions` positions behind the newest applied event are deleted, a chunk per transaction, every
`interval` seconds, by one instance at a time. One call spends at most `budget` seconds (it runs between two
batches); a backlog (say, after an upgrade) is worked off over the following calls. A failure is logged and
retried at the next interval: pruning never holds up the stream for long.
"""

from __future__ import annotations

import logging
import time

from taifa_projector import metrics
from taifa_projector.application.ports import ReadModelStore
from taifa_projector.application.retry import error_name, is_transient

log = logging.getLogger(__name__)


class ProcessedPruner:
    def __init__(
        self, store: ReadModelStore, *, keep_positions: int, interval: float, chunk: int, budget: float = 0.2
    ) -> None:
        self.store = store
        self.keep_positions = keep_positions
        self.interval = interval
        self.chunk = chunk
        self.budget = budget
        self._next_run = time.monotonic() + interval

    async def maybe_prune(self, highest_position: int) -> int:
        """Prune if the interval has passed; the number of ids forgotten."""
        if time.monotonic() < self._next_run:
            return 0
        self._next_run = time.monotonic() + self.interval
        return await self.prune(highest_position)

    async def prune(self, highest_position: int) -> int:
        below = highest_position - self.keep_positions
        if below <= 0:
            return 0
        pruned = 0
        stop_at = time.monotonic() + self.budget
        try:
            while True:
                deleted = await self.store.prune_processed(below, self.chunk)
                if deleted is None:  # another instance is pruning
                    break
                pruned += deleted
                metrics.PROCESSED_PRUNED.inc(deleted)
                if deleted < self.chunk:
                    break
                if time.monotonic() >= stop_at:
                    self._next_run = time.monotonic()  # more to do: go on between the next two batches
                    break
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("pruning processed-event ids skipped (%s); next try in %.0fs", error_name(exc), self.interval)
        if pruned:
            log.info("forgot %d processed-event ids below position %d", pruned, below)
        return pruned

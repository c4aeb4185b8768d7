"""Keep Python's cyclic garbage collector off the long-lived heap (a measured CPU cost, not a behaviour).

Decoding an event allocates a dozen GC-tracked objects (pydantic models, their dicts, UUIDs), so the
collector runs every few dozen events; its older generations then walk every long-lived object
(imported modules, clients, and in a rebuild the whole in-memory projection). Freezing what is alive
moves it to the permanent generation, which collections skip. Objects are still freed by reference
counting as usual; only cyclic garbage among frozen objects would wait for `unfreeze`.

Measured with bench/projector (one A/B run on a shared machine, so roughly): freezing alone took the
live path from ~95 to ~72 us of CPU per event, and a 200k-event fold from ~37 to ~25-34 us per event.

The youngest generation is also collected less often (`GEN0_THRESHOLD` allocations instead of 700): a batch of
2,000 envelopes with their metadata is some 40,000 tracked objects alive together, so at 700 the collector ran
dozens of times per batch and moved them all through the older generations. Measured (issue 18, decoding 10,000
events with metadata in 2,000-event batches on the loaded VM): 26-29 us per event at 700, 19 at 50,000, 15 with
the collector off.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

GEN0_THRESHOLD = 50_000


def freeze_long_lived() -> None:
    """Move every object alive now to the permanent generation (after one collection), and collect the youngest
    generation every `GEN0_THRESHOLD` allocations."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, older, oldest)


@contextmanager
def growing_heap() -> Iterator[None]:
    """Around a rebuild, which keeps nearly everything it builds: the cyclic collector is off until its end.

    When the heap was frozen page by page instead (before issue 18), the young collections still cost a rebuild
    of 200,000 events with metadata ~13 % of its CPU (bench/projector --rebuild-only, 45 -> 39 us/event), and
    they find nothing: a fold of 50,000 generated events (two of them invalid) with the collector off leaves no
    cyclic garbage (`gc.collect()` = 0).
    Memory is still freed by reference counting; the collector's previous state comes back at the end.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()

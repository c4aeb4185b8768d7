"""How a long-running service stops: SIGTERM/SIGINT set one `asyncio.Event`, and every loop that waits between
rounds waits on that event, so a stop is noticed at once instead of after the current pause."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterable


async def sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Pause up to `seconds`, returning as soon as `stop` is set. True when stopped (the caller leaves its loop)."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return stop.is_set()
    return True


def stop_on_signals(stop: asyncio.Event, signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Set `stop` when the process receives one of `signals` (SIGTERM from Kubernetes, SIGINT from a terminal).

    Installed on the running event loop (call it from inside `async def main`), so the handler runs as a loop
    callback rather than interrupting whatever code the signal lands in.
    """
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)


def on_stop_signals(
    handler: Callable[[int], None], signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT)
) -> None:
    """Call `handler(signum)` when the process receives one of `signals`, for a process without an event loop
    (a supervisor that forwards the signal to its children)."""
    for sig in signals:
        signal.signal(sig, lambda signum, _frame: handler(signum))

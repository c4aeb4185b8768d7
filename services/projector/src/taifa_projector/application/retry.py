"""Retry a store call while the store is unavailable; let every other failure through.

A database or Redis that is down, restarting or overloaded (`StoreUnavailable`, translated by the
adapters) is transient: the projector waits and never dead-letters for it. Anything else (a
`StoreRejected`, a bug) is deterministic: the caller retries it a bounded number of times at most and
then dead-letters the event or fails closed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from taifa_projector import metrics
from taifa_projector.application.ports import StoreError, StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """True for failures of the infrastructure rather than of the data."""
    return isinstance(exc, StoreUnavailable)


def error_name(exc: BaseException) -> str:
    """What a failure is called in logs, metrics and dead-letter headers: the driver's error class (and
    SQLSTATE) for a store's failure, else the class; never the message, which could quote event values."""
    return exc.error if isinstance(exc, StoreError) else type(exc).__name__


async def retry_transient(action: Callable[[], Awaitable[T]], *, initial: float, maximum: float) -> T:
    """Run `action` until it succeeds or fails otherwise than `StoreUnavailable` (that failure is raised)."""

    def _note(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        store = exc.store if isinstance(exc, StoreError) else "unknown"
        metrics.TRANSIENT_FAILURES.labels(store).inc()
        log.warning("%s unavailable (%s); retry %d", store, error_name(exc) if exc else "?", state.attempt_number)

    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(StoreUnavailable),
        wait=wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial),
        before_sleep=_note,
        reraise=True,
    ):
        with attempt:
            return await action()
    raise AssertionError("unreachable")  # pragma: no cover

"""Which failures are transient (retry forever with back-off, commit nothing) and the retry loop itself.

A database or Redis that is down, restarting or overloaded is transient: the projector waits and never
dead-letters for it. Anything else (bad data the database refuses, a bug) is deterministic: it is
retried a bounded number of times and then the event goes to the dead-letter topic.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import redis.exceptions
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from taifa_projector import metrics

log = logging.getLogger(__name__)
T = TypeVar("T")

# SQLSTATE classes that mean "the server could not do it now", not "the request is wrong".
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
# Redis error codes of a server state that passes (restart, replica promotion, a busy script, a failed save,
# scripts lost in a restart). Anything else (ERR, WRONGTYPE, OOM, EXECABORT, NOPERM...) is an answer about
# the request: retrying it forever would stall the projector silently, so it is deterministic (batches.py
# then fails closed). OOM is deterministic too: waiting for memory is the operator's call, not a retry loop.
TRANSIENT_REDIS_CODES = frozenset(
    {"LOADING", "BUSY", "MISCONF", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "NOSCRIPT"}
)
PIPELINE_MARKER = "caused error: "


def redis_error_code(exc: BaseException) -> str:
    """The error code Redis answered (`WRONGTYPE`, `OOM`...), also from a pipeline's annotated error
    ("Command # 1 (...) of pipeline caused error: ('OOM ...',)")."""
    text = str(exc)
    if PIPELINE_MARKER in text:
        text = text.split(PIPELINE_MARKER, 1)[1].lstrip("('\"")
    return text.split(" ", 1)[0]


def is_transient(exc: BaseException) -> bool:
    """True for failures of the infrastructure rather than of the data."""
    if isinstance(exc, asyncpg.PostgresError):
        return (exc.sqlstate or "")[:2] in TRANSIENT_SQLSTATE_CLASSES
    if isinstance(exc, redis.exceptions.ResponseError):
        return redis_error_code(exc) in TRANSIENT_REDIS_CODES
    return isinstance(
        exc,
        (
            OSError,
            TimeoutError,
            asyncpg.InterfaceError,
            asyncpg.exceptions.ConnectionDoesNotExistError,
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            redis.exceptions.BusyLoadingError,
        ),
    )


async def retry_transient(action: Callable[[], Awaitable[T]], *, store: str, initial: float, maximum: float) -> T:
    """Run `action` until it succeeds or fails deterministically (that failure is raised)."""

    def _note(state: RetryCallState) -> None:
        metrics.TRANSIENT_FAILURES.labels(store).inc()
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s unavailable (%s); retry %d", store, type(exc).__name__, state.attempt_number)

    async for attempt in AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial),
        before_sleep=_note,
        reraise=True,
    ):
        with attempt:
            return await action()
    raise AssertionError("unreachable")  # pragma: no cover

"""asyncpg and redis-py failures translated into the two the use cases know, at the edge.

As httpx's `map_exceptions`: the adapters wrap every call to a driver (`@postgres_errors` on a coroutine,
or `with postgres_errors:` around a block) and the rest of the projector only ever sees
`StoreUnavailable` (retry with back-off) or `StoreRejected` (deterministic). Failures that are neither
a driver's nor a socket's (a bug) pass through untouched and count as deterministic.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import asyncpg
import redis.exceptions

from taifa_projector.application.ports import StoreError, StoreRejected, StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")

# SQLSTATE classes that mean "the server could not do it now", not "the request is wrong".
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
# Redis error codes of a server state that passes (restart, replica promotion, a busy script, a failed save,
# scripts lost in a restart). Anything else (ERR, WRONGTYPE, OOM, EXECABORT, NOPERM...) is an answer about
# the request: retrying it forever would stall the projector silently, so it is deterministic (the batch
# then fails closed). OOM is deterministic too: waiting for memory is the operator's call, not a retry loop.
TRANSIENT_REDIS_CODES = frozenset(
    {"LOADING", "BUSY", "MISCONF", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "NOSCRIPT"}
)
PIPELINE_MARKER = "caused error: "
SOCKET_ERRORS = (OSError, TimeoutError)


def error_name(exc: BaseException) -> str:
    """A failure's class (and SQLSTATE) without its message, which could quote event values."""
    sqlstate = getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__}({sqlstate})" if sqlstate else type(exc).__name__


def redis_error_code(exc: BaseException) -> str:
    """The error code Redis answered (`WRONGTYPE`, `OOM`...), also from a pipeline's annotated error
    ("Command # 1 (...) of pipeline caused error: ('OOM ...',)")."""
    text = str(exc)
    if PIPELINE_MARKER in text:
        text = text.split(PIPELINE_MARKER, 1)[1].lstrip("('\"")
    return text.split(" ", 1)[0]


def classify_postgres(exc: Exception) -> type[StoreError] | None:
    if isinstance(exc, asyncpg.PostgresError):
        return StoreUnavailable if (exc.sqlstate or "")[:2] in TRANSIENT_SQLSTATE_CLASSES else StoreRejected
    if isinstance(exc, (*SOCKET_ERRORS, asyncpg.InterfaceError, asyncpg.exceptions.ConnectionDoesNotExistError)):
        return StoreUnavailable
    return None


def classify_redis(exc: Exception) -> type[StoreError] | None:
    if isinstance(exc, redis.exceptions.ResponseError):
        return StoreUnavailable if redis_error_code(exc) in TRANSIENT_REDIS_CODES else StoreRejected
    if isinstance(exc, (*SOCKET_ERRORS, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return StoreUnavailable
    if isinstance(exc, redis.exceptions.RedisError):
        return StoreRejected
    return None


class MapErrors:
    """A context manager (and coroutine decorator) that re-raises a driver's failure as a `StoreError`."""

    def __init__(self, store: str, classify: Callable[[Exception], type[StoreError] | None]) -> None:
        self.store = store
        self.classify = classify

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not isinstance(exc, Exception) or isinstance(exc, StoreError):
            return  # no failure, a cancellation, or already translated
        kind = self.classify(exc)
        if kind is not None:
            raise kind(self.store, error_name(exc)) from exc

    def __call__(self, method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(method)
        async def translated(*args: P.args, **kwargs: P.kwargs) -> T:
            with self:
                return await method(*args, **kwargs)

        return translated


postgres_errors = MapErrors("postgres", classify_postgres)
redis_errors = MapErrors("redis", classify_redis)

"""The adapters' translation of driver failures: transient ones become StoreUnavailable, answers about the
request become StoreRejected named without their message, anything else passes through (no I/O)."""

from __future__ import annotations

import asyncpg
import pytest
import redis.exceptions
from taifa_projector.adapters.driver_errors import postgres_errors, redis_errors
from taifa_projector.application.ports import StoreRejected, StoreUnavailable


def test_postgres_server_states_are_unavailable_and_refusals_rejected_without_their_message() -> None:
    for transient in (
        asyncpg.exceptions.AdminShutdownError("terminating connection"),  # 57P01
        asyncpg.exceptions.SerializationError("could not serialize"),  # 40001
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),  # 53300
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        ConnectionRefusedError("connect"),
        TimeoutError(),
    ):
        with pytest.raises(StoreUnavailable) as unavailable, postgres_errors:
            raise transient
        assert unavailable.value.store == "postgres" and unavailable.value.__cause__ is transient
    with pytest.raises(StoreRejected) as rejected, postgres_errors:
        raise asyncpg.exceptions.CheckViolationError("new row violates check constraint: secret 'hunter2'")
    assert rejected.value.error == "CheckViolationError(23514)" and "hunter2" not in str(rejected.value)


async def test_a_decorated_coroutine_reports_the_translation_and_a_bug_passes_through_untouched() -> None:
    @redis_errors
    async def write(exc: Exception) -> None:
        raise exc

    with pytest.raises(StoreRejected) as rejected:
        await write(redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"))
    assert rejected.value.store == "redis" and rejected.value.error == "ResponseError"
    with pytest.raises(StoreUnavailable):
        await write(redis.exceptions.TimeoutError("Timeout reading from socket"))
    with pytest.raises(KeyError):
        await write(KeyError("a bug"))

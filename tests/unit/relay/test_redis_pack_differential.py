"""The relay's Redis connections pack a command into the very bytes redis-py's own `pack_command` sends (issue 18)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection
from redis.exceptions import DataError
from taifa_relay.adapters.redis_connection import DirectSendConnection

_args = st.one_of(
    st.text(max_size=30),
    st.binary(max_size=30),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.booleans(),
    st.binary(min_size=6001, max_size=6010),
)
_names = st.sampled_from(["EVALSHA_RO", "HGETALL", b"GET", "SCRIPT LOAD", b"CONFIG GET", "CLIENT\tID", "", "x"])


def _packed(connection: Connection, args: tuple[Any, ...]) -> bytes | type[Exception]:
    try:
        return b"".join(connection.pack_command(*args))
    except (DataError, AssertionError) as exc:
        return type(exc)


@given(_names, st.lists(_args, max_size=8))
def test_same_bytes_as_redis_py(name: str | bytes, rest: list[Any]) -> None:
    args = (name, *rest)
    assert _packed(DirectSendConnection(), args) == _packed(Connection(), args)


def test_the_auth_read_takes_the_fast_path_and_matches() -> None:
    args = ("EVALSHA_RO", "a" * 40, 2, "taifa:auth:user@example.test", b"taifa:auth:epoch", "0", "")
    fast = DirectSendConnection().pack_command(*args)
    assert len(fast) == 1 and fast[0] == b"".join(Connection().pack_command(*args))


@pytest.mark.parametrize("value", [True, 1.5, None])
def test_other_types_go_to_redis_py(value: Any) -> None:
    assert _packed(DirectSendConnection(), ("SET", "k", value)) == _packed(Connection(), ("SET", "k", value))

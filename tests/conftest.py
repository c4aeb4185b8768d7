"""Session-wide fixtures: real PostgreSQL, Redis and Kafka-protocol broker processes.

They start lazily (a unit-only run starts nothing) and stop at the end of the session. When a
service cannot start, the test fails with the service's log tail; it never skips.
With TAIFA_TEST_SERVICES=containers (and Docker) the same fixtures use testcontainers.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from taifa_localstack import TOPIC_PARTITIONS, Postgres, Redis, Tansu, create_topics, event_signing_env
from taifa_localstack.process import ManagedProcess
from taifa_localstack.stale_ports import hold_stale_ports

# One event signing key per test session, made now and never stored: every API and projector a test starts
# (in-process Settings and subprocesses alike inherit the environment) signs and verifies with it, and
# tests that produce events themselves sign with `tests.event_signing.signing_keyring()`.
# (`setdefault`: importing this module twice must not change the key.)
for _name, _value in event_signing_env("tests").items():
    os.environ.setdefault(_name, _value)


# Ports a removed container's DNAT rule still takes, held for the session so that no server a test starts on port 0
# is given one (listening, yet refused: taifa_localstack.stale_ports).
_STALE_PORTS = pytest.StashKey[list[socket.socket]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STALE_PORTS] = hold_stale_ports()


def pytest_report_header(config: pytest.Config) -> str | None:
    held = config.stash.get(_STALE_PORTS, [])
    if not held:
        return None
    ports = ", ".join(str(sock.getsockname()[1]) for sock in held)
    return f"ports held because a removed container's DNAT rule still takes them: {ports}"


def pytest_unconfigure(config: pytest.Config) -> None:
    for sock in config.stash.get(_STALE_PORTS, []):
        sock.close()


def _use_containers() -> bool:
    return os.environ.get("TAIFA_TEST_SERVICES", "processes") == "containers"


def _serve(service: ManagedProcess) -> Iterator[ManagedProcess]:
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A PostgreSQL server with an empty `taifa` database; `.url` is its DSN."""
    if _use_containers():
        from taifa_localstack.containers import PostgresContainer

        yield from _serve(PostgresContainer())  # type: ignore[misc]
        return
    yield from _serve(Postgres(tmp_path_factory.mktemp("postgres")))  # type: ignore[misc]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    """A Redis server without persistence; `.url` is its URL."""
    if _use_containers():
        from taifa_localstack.containers import RedisContainer

        yield from _serve(RedisContainer())  # type: ignore[misc]
        return
    yield from _serve(Redis(tmp_path_factory.mktemp("redis")))  # type: ignore[misc]


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tansu]:
    """The Tansu broker with the project's topics created; `.bootstrap` is host:port."""
    if _use_containers():
        from taifa_localstack.containers import KafkaContainer

        broker: ManagedProcess = KafkaContainer()
    else:
        broker = Tansu(tmp_path_factory.mktemp("tansu"))
    for served in _serve(broker):
        asyncio.run(create_topics(served.bootstrap, TOPIC_PARTITIONS))  # type: ignore[attr-defined]
        yield served  # type: ignore[misc]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path

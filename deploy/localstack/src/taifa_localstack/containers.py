"""The infrastructure of `infrastructure.py` in Docker containers via testcontainers (TAIFA_TEST_SERVICES=containers).

For developers with a Docker engine; the default (and CI) runs local processes. Needs the `containers` extra.
"""

from __future__ import annotations

from typing import Any

from testcontainers.community.kafka import KafkaContainer as _Kafka
from testcontainers.community.postgres import PostgresContainer as _Postgres
from testcontainers.community.redis import RedisContainer as _Redis

POSTGRES_IMAGE = "postgres:15.10-bookworm"
REDIS_IMAGE = "redis:7.4.2-bookworm"
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"


class _Contained:
    """Adapts a testcontainers container to the start/stop/restart interface the fixtures use."""

    def __init__(self, container: Any) -> None:
        self._container = container

    def start(self, timeout: float = 120.0) -> None:
        self._container.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._container.stop()

    def kill(self) -> None:
        self._container.get_wrapped_container().kill()

    def restart(self, timeout: float = 60.0) -> None:
        self._container.get_wrapped_container().restart()

    def _host_port(self, port: int) -> str:
        return f"{self._container.get_container_host_ip()}:{self._container.get_exposed_port(port)}"


class PostgresContainer(_Contained):
    def __init__(self) -> None:
        super().__init__(_Postgres(POSTGRES_IMAGE, username="postgres", password="postgres", dbname="taifa"))  # noqa: S106 - throwaway test container

    @property
    def url(self) -> str:
        return f"postgresql://postgres:postgres@{self._host_port(5432)}/taifa"


class RedisContainer(_Contained):
    def __init__(self) -> None:
        super().__init__(_Redis(REDIS_IMAGE))

    @property
    def url(self) -> str:
        return f"redis://{self._host_port(6379)}/0"


class KafkaContainer(_Contained):
    def __init__(self) -> None:
        super().__init__(_Kafka(KAFKA_IMAGE).with_kraft())

    @property
    def bootstrap(self) -> str:
        return str(self._container.get_bootstrap_server())

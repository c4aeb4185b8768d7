"""The infrastructure of `infrastructure.py` in containers via testcontainers (TAIFA_TEST_SERVICES=containers).

Any Docker-compatible API named by DOCKER_HOST serves: a Docker engine, or podman's (`podman system service`, which
`make test-containers` starts; deploy/scripts/test-containers.sh). The images are those of deploy/compose.yaml;
where nothing can be pulled, `deploy/scripts/images.sh infra` builds stand-ins under those names. Ports are published
on 127.0.0.1 only. Needs the `containers` extra, and TESTCONTAINERS_RYUK_DISABLED=true where the Ryuk image cannot
be pulled (the fixtures stop their containers themselves).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from testcontainers.community.postgres import PostgresContainer as _Postgres
from testcontainers.community.redis import RedisContainer as _Redis
from testcontainers.core.container import DockerContainer

from taifa_localstack.infrastructure import _kafka_metadata_ok
from taifa_localstack.process import ServiceFailed, free_port

# deploy/compose.yaml's images (a deploy test keeps them equal); TAIFA_TEST_*_IMAGE name others.
POSTGRES_IMAGE = os.environ.get("TAIFA_TEST_POSTGRES_IMAGE", "postgres:17.6-bookworm")
REDIS_IMAGE = os.environ.get("TAIFA_TEST_REDIS_IMAGE", "redis:7.4.5-bookworm")
KAFKA_IMAGE = os.environ.get("TAIFA_TEST_KAFKA_IMAGE", "apache/kafka:4.1.0")
LOOPBACK = "127.0.0.1"


class _Contained:
    """Adapts a testcontainers container to the start/stop/restart interface the fixtures use."""

    def __init__(self, container: Any, *ports: int) -> None:
        self._container = container
        for port in ports:
            # docker-py's binding (LOOPBACK, host port): loopback only (with_bind_ports takes no address), on a port
            # free_port() chose outside the ephemeral range, never one podman picks at random (free_port says why).
            container.ports[str(port)] = (LOOPBACK, free_port())

    def start(self, timeout: float = 120.0) -> None:
        self._container.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._container.stop()

    def kill(self) -> None:
        self._container.get_wrapped_container().kill()

    def restart(self, timeout: float = 60.0) -> None:
        self._container.get_wrapped_container().restart()

    def _host_port(self, port: int) -> str:
        return f"{LOOPBACK}:{self._container.get_exposed_port(port)}"


class PostgresContainer(_Contained):
    def __init__(self) -> None:
        super().__init__(_Postgres(POSTGRES_IMAGE, username="postgres", password="postgres", dbname="taifa"), 5432)  # noqa: S106 - throwaway test container

    @property
    def url(self) -> str:
        return f"postgresql://postgres:postgres@{self._host_port(5432)}/taifa"


class RedisContainer(_Contained):
    def __init__(self) -> None:
        super().__init__(_Redis(REDIS_IMAGE), 6379)

    @property
    def url(self) -> str:
        return f"redis://{self._host_port(6379)}/0"


class KafkaContainer(_Contained):
    """One KRaft broker (apache/kafka's settings, as in deploy/compose.yaml) that advertises the loopback address
    the tests reach it on: the host port is chosen first and published as the same port inside."""

    def __init__(self) -> None:
        self.port = free_port()
        container = DockerContainer(KAFKA_IMAGE)
        for key, value in {
            "KAFKA_NODE_ID": "1",
            "KAFKA_PROCESS_ROLES": "broker,controller",
            "KAFKA_LISTENERS": f"PLAINTEXT://:{self.port},CONTROLLER://:9093",
            "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{LOOPBACK}:{self.port}",
            "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
            "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
            "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        }.items():
            container.with_env(key, value)
        container.ports[str(self.port)] = (LOOPBACK, self.port)  # type: ignore[assignment]  # docker-py takes it
        super().__init__(container)

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        super().start(timeout)
        self._wait_ready(timeout)

    def restart(self, timeout: float = 60.0) -> None:
        super().restart(timeout)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if asyncio.run(_kafka_metadata_ok(self.bootstrap)):
                    return
            except Exception:  # noqa: BLE001, S110 - not up yet
                pass
            time.sleep(0.5)
        logs = self._container.get_logs()
        raise ServiceFailed(f"{KAFKA_IMAGE} not ready on {self.bootstrap} within {timeout}s: {logs!r:.2000}")

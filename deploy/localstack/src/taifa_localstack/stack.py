"""The infrastructure of the local stack: PostgreSQL, Redis and the broker, started together.

Used by the test fixtures, `make stack` and `make dev`. Everything is ephemeral: a new stack starts
empty (the broker keeps data in memory anyway).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from taifa_events import topics

from taifa_localstack.infrastructure import Postgres, Redis, Tansu, create_topics
from taifa_localstack.process import ManagedProcess
from taifa_localstack.signing_keys import event_signing_env

# The partition counts of deploy/k8s/base/kafka/topics.yaml (a deploy test keeps them equal): with 3 domain
# partitions, two projector instances split the domain events 2:1 and the busier one set the pace.
TOPIC_PARTITIONS: dict[str, int] = {
    topics.SMTP_CREDENTIALS: 12,
    topics.DOMAINS: 6,
    topics.ACCOUNTS: 3,
    **{topics.dead_letter_topic(t): 1 for t in topics.ALL_TOPICS},
    topics.USAGE_TOPIC: 6,  # usage windows (issue 16): its own topic, finite retention in the manifests
    topics.dead_letter_topic(topics.USAGE_TOPIC): 1,
}


class Stack:
    """PostgreSQL + Redis + Tansu in one work directory; `stop()` ends all of them."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="taifa-stack-"))
        self.postgres = Postgres(self.workdir / "postgres")
        self.redis = Redis(self.workdir / "redis")
        self.kafka = Tansu(self.workdir / "tansu")
        self._started: list[ManagedProcess] = []
        # The services' event signing key for this run (the API signs, the projector verifies).
        self.signing = event_signing_env()

    def start(self) -> None:
        try:
            for service in (self.postgres, self.redis, self.kafka):
                service.start()
                self._started.append(service)
            asyncio.run(create_topics(self.kafka.bootstrap, TOPIC_PARTITIONS))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        while self._started:
            self._started.pop().stop()

    def env(self) -> dict[str, str]:
        """The TAIFA_* settings that point a service at this stack."""
        return {
            "TAIFA_DATABASE_URL": self.postgres.url,
            "TAIFA_REDIS_URL": self.redis.url,
            "TAIFA_KAFKA_BOOTSTRAP": self.kafka.bootstrap,
            **self.signing,
        }

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Real PostgreSQL, Redis and Kafka-protocol processes on loopback, for tests and the local stack."""

from taifa_localstack.process import ManagedProcess, ServiceFailed, free_port, wait_until
from taifa_localstack.services import Postgres, Redis, Tansu, create_topics
from taifa_localstack.stack import TOPIC_PARTITIONS, Stack

__all__ = [
    "TOPIC_PARTITIONS",
    "ManagedProcess",
    "Postgres",
    "Redis",
    "ServiceFailed",
    "Stack",
    "Tansu",
    "create_topics",
    "free_port",
    "wait_until",
]

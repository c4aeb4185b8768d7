"""Real PostgreSQL, Redis and Kafka-protocol processes on loopback, for tests and the local stack."""

from taifa_localstack.infrastructure import Postgres, Redis, Tansu, create_topics
from taifa_localstack.process import ManagedProcess, ServiceFailed, ServiceProcess, free_port, run_once, wait_until
from taifa_localstack.signing_keys import event_signing_env
from taifa_localstack.stack import TOPIC_PARTITIONS, Stack

__all__ = [
    "TOPIC_PARTITIONS",
    "ManagedProcess",
    "Postgres",
    "Redis",
    "ServiceFailed",
    "ServiceProcess",
    "Stack",
    "Tansu",
    "create_topics",
    "event_signing_env",
    "free_port",
    "run_once",
    "wait_until",
]

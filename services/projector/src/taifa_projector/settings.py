"""Every TAIFA_* variable the projector reads, declared once (pydantic-settings)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from taifa_events import topics
from taifa_events.signing import InvalidKeyring, Keyring
from taifa_runtime.kafka import KafkaConnectionSettings


class Settings(BaseSettings, KafkaConnectionSettings):
    """Projector configuration; every field is an environment variable with the `TAIFA_` prefix."""

    model_config = SettingsConfigDict(env_prefix="TAIFA_", extra="ignore")

    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/taifa",
        description="PostgreSQL DSN (asyncpg) holding the read models and the projector's bookkeeping.",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL of the auth cache the relay reads.")

    projector_group_id: str = Field(
        "taifa-projector",
        description="Kafka consumer group; also the key of the offsets the projector records in PostgreSQL.",
    )
    projector_topics: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(topics.ALL_TOPICS),
        description="Comma-separated topics to consume (tests use per-test topics); DLQs are `<topic>.dlq`.",
    )
    projector_health_port: int = Field(9102, description="HTTP port of /healthz, /readyz and /metrics.")
    projector_health_host: str = Field("127.0.0.1", description="Address the health/metrics server binds.")
    projector_log_level: str = Field("INFO", description="Log level of the projector's JSON logs (`run`).")
    projector_batch_size: int = Field(
        2000,
        ge=1,
        le=5000,
        description="Most records taken from Kafka per batch, at most 5,000: a live batch holds one PostgreSQL "
        "advisory lock per account it touches, from the server's shared lock table (max_locks_per_transaction x "
        "max_connections slots; raise max_locks_per_transaction when several instances take large batches).",
    )
    projector_poll_timeout_ms: int = Field(200, ge=1, description="How long one poll waits for records.")
    projector_session_timeout_ms: int = Field(
        6000, ge=500, description="Consumer-group session timeout: how soon a dead instance's partitions move."
    )
    projector_max_poll_interval_ms: int = Field(
        600_000,
        ge=1000,
        description="Longest pause between polls (e.g. waiting for a database) before leaving the group.",
    )
    projector_retry_initial_seconds: float = Field(0.2, gt=0, description="First back-off after a transient failure.")
    projector_retry_max_seconds: float = Field(
        5.0, gt=0, description="Longest back-off between retries of a transient failure."
    )
    projector_max_attempts: int = Field(
        3, ge=1, description="Attempts at a deterministically failing event before it goes to the dead-letter topic."
    )
    projector_cache_check_seconds: float = Field(
        1.0, gt=0, description="How often the projector checks that the Redis auth cache is complete (epoch, offsets)."
    )
    projector_cache_chunk: int = Field(5000, ge=1, description="Entries per pipeline when the cache is rebuilt.")
    projector_db_pool_size: int = Field(4, ge=1, description="PostgreSQL connections the projector keeps.")
    projector_processed_keep_positions: int = Field(
        1_000_000,
        ge=1,
        description="Processed-event ids kept for duplicate counting, in positions behind the newest applied event; "
        "older ones are pruned (a redelivery of those is still harmless: every write is conditional on position).",
    )
    projector_prune_interval_seconds: float = Field(
        60.0, gt=0, description="How often one projector instance prunes old processed-event ids."
    )
    projector_prune_chunk: int = Field(10_000, ge=1, description="Processed-event ids deleted per transaction.")
    projector_publish_applied: bool = Field(
        True, description="Set the read-your-writes key and publish each applied event id (the API waits on it)."
    )

    projector_usage_signing_context: Literal["event", "usage"] = Field(
        "event",
        description="Context the usage records are signed under: `usage` (a usage record copied to an event topic "
        "never verifies there) once every projector and webhook dispatcher runs a release that reads it (this one "
        "does); `event`, the default of this release, is what older releases read (deploy/README.md, rollout).",
    )

    usage_flush_seconds: float = Field(
        15.0,
        gt=0,
        description="How often the projector publishes the relays' usage counters (Redis) as windows on the usage "
        "topic: the read model's usage and last use lag traffic by about this much, and a Redis loss loses at most "
        "this much of the current windows.",
    )
    usage_window_grace_seconds: int = Field(
        60,
        ge=0,
        description="How long after its hour a usage window is still flushed before it is closed (late counts).",
    )
    projector_usage_group_id: str = Field(
        "taifa-projector-usage", description="Kafka consumer group that applies the usage topic to the read model."
    )
    projector_usage_topic: str = Field(
        topics.USAGE_TOPIC, description="The usage topic (windows and quota notices; tests use per-test topics)."
    )
    projector_usage_enabled: bool = Field(
        True, description="Run the usage flusher and the usage consumer in `taifa-projector run`."
    )
    event_signing_key_id: str | None = Field(
        None,
        description="Id (in TAIFA_EVENT_SIGNING_KEYS) of the key the usage flusher signs its records with; unset "
        "with a single configured key uses that one.",
    )

    event_signing_keys: SecretStr | None = Field(
        None,
        description="Keys that may sign events, `id:secret[,id:secret]` (the API's TAIFA_EVENT_SIGNING_KEYS, from the "
        "same Secret): a record that no configured key signed is dead-lettered, never applied. Required to consume "
        "and for `rebuild --from kafka`.",
    )

    @model_validator(mode="after")
    def _signing_keys_parse(self) -> Settings:
        if self.event_signing_keys is not None:
            try:
                Keyring.parse(self.event_signing_keys.get_secret_value())
            except InvalidKeyring as exc:
                raise ValueError(str(exc)) from None
        return self

    def event_keyring(self) -> Keyring:
        """The keys events are verified with; InvalidKeyring (a message for operators) when none is configured."""
        if self.event_signing_keys is None:
            raise InvalidKeyring(
                "TAIFA_EVENT_SIGNING_KEYS is not set: the projector applies only events signed by the API "
                "and refuses to consume without the keys to check them"
            )
        return Keyring.parse(self.event_signing_keys.get_secret_value())

    def usage_signing_keyring(self) -> Keyring:
        """The keyring the usage flusher signs with (`event_signing_key_id`, or the only configured key)."""
        ring = self.event_keyring()
        active = self.event_signing_key_id
        if active is None and len(ring.key_ids) == 1:
            active = ring.key_ids[0]
        if active is None:
            raise InvalidKeyring("several event signing keys are configured: set TAIFA_EVENT_SIGNING_KEY_ID")
        return Keyring.parse(self.event_signing_keys.get_secret_value() if self.event_signing_keys else "", active)

    @field_validator("projector_topics", mode="before")
    @classmethod
    def _split_topics(cls, value: object) -> object:
        # NoDecode keeps the raw environment text; accept "a,b,c" as well as a list.
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

"""The usage topic on the Kafka side: signed records keyed by credential id (`ports.UsagePublisher`), and the
consumer of the projector's usage group."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from taifa_events import topics, usage
from taifa_events.signing import USAGE_CONTEXT, Keyring
from taifa_events.usage import QuotaReached, UsageWindow

from taifa_projector.adapters.kafka import KafkaConnection, _client_options


class KafkaUsagePublisher:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        keyring: Keyring,
        topic: str = topics.USAGE_TOPIC,
        context: bytes = USAGE_CONTEXT,
    ) -> None:
        self.producer = producer
        self.keyring = keyring
        self.topic = topic
        self.context = context  # the event context while older readers may still run (TAIFA_PROJECTOR_USAGE_...)

    async def publish(self, records: Sequence[UsageWindow | QuotaReached]) -> None:
        """Send every record and wait for all acknowledgements (a failure raises: nothing is forgotten)."""
        futures = []
        for record in records:
            value = usage.encode_usage_record(record)
            futures.append(
                await self.producer.send(
                    self.topic,
                    value,
                    key=str(record.credential_id).encode(),
                    headers=self.keyring.headers(value, self.context),
                )
            )
        for future in futures:
            await future


def make_usage_consumer(kafka: KafkaConnection, topic: str, *, group_id: str, batch_size: int) -> AIOKafkaConsumer:
    """The usage group's consumer: from the earliest retained window (a replay changes nothing), offsets committed
    after each applied batch."""
    consumer = AIOKafkaConsumer(
        topic,
        **_client_options(kafka),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=batch_size,
    )
    return consumer

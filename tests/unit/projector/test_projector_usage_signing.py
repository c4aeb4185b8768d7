"""The usage records' signing context (TAIFA_PROJECTOR_USAGE_SIGNING_CONTEXT): the event context by default, which
every reader accepts (older releases only that one, during a rollout); the usage context when set, which an event
topic never accepts."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from taifa_events.signing import REASON_BAD_SIGNATURE, USAGE_CONTEXTS, SignatureRefused, signature_of
from taifa_events.usage import UsageWindow
from taifa_projector.adapters.usage_kafka import KafkaUsagePublisher
from taifa_projector.settings import Settings

from tests.unit.projector.fakes import KEYRING


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, list[tuple[str, bytes]]]] = []

    async def send(self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]) -> Any:
        self.sent.append((value, headers))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _published(context_setting: str) -> tuple[bytes, Any]:
    from taifa_projector import bootstrap  # the composition root maps the setting to the context

    settings = Settings(projector_usage_signing_context=context_setting)  # type: ignore[arg-type]
    producer = Producer()
    publisher = KafkaUsagePublisher(producer, KEYRING, "usage", bootstrap.usage_signing_context(settings))  # type: ignore[arg-type]
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    window = UsageWindow(
        credential_id=uuid.uuid4(), account_id=uuid.uuid4(), window_start=hour, messages=1, reported_at=now
    )
    asyncio.run(publisher.publish([window]))
    value, headers = producer.sent[0]
    return value, signature_of(headers)


def test_by_default_usage_records_verify_as_every_release_reads_them() -> None:
    value, signature = _published("event")
    assert KEYRING.verify(value, signature) and KEYRING.verify(value, signature, USAGE_CONTEXTS)


def test_with_the_usage_context_a_usage_record_never_verifies_on_an_event_topic() -> None:
    value, signature = _published("usage")
    assert KEYRING.verify(value, signature, USAGE_CONTEXTS)
    with pytest.raises(SignatureRefused) as refused:
        KEYRING.verify(value, signature)
    assert refused.value.reason == REASON_BAD_SIGNATURE

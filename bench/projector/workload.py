"""The projector benchmark's workload: a plausible event log, produced to Kafka or written to `event_store`.

Per domain: registered, verified, then 1-4 credential cycles (created, deactivated, created...), with the
headers the API's publisher sends. Deterministic for a seed, so every run applies the same events.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from taifa_events import kafka_headers, topics
from taifa_events.signing import Keyring

EVENT_STORE_DDL = """
CREATE TABLE IF NOT EXISTS event_store (
    position bigint PRIMARY KEY, event_id uuid UNIQUE NOT NULL, event_type text NOT NULL,
    schema_version int NOT NULL, stream_id uuid NOT NULL, stream_version int NOT NULL,
    topic text NOT NULL, partition_key text NOT NULL, occurred_at timestamptz NOT NULL,
    correlation_id text NOT NULL, data jsonb NOT NULL, metadata jsonb NULL, UNIQUE (stream_id, stream_version)
)
"""
EVENT_STORE_COLUMNS = (
    "position", "event_id", "event_type", "schema_version", "stream_id", "stream_version", "topic", "partition_key",
    "occurred_at", "correlation_id", "data", "metadata",
)  # fmt: skip
BASE = datetime(2026, 11, 23, tzinfo=UTC)


def _ts(position: int) -> str:
    return (BASE + timedelta(milliseconds=position)).isoformat().replace("+00:00", "Z")


def generate(total: int, seed: int = 1, active: int = 2000, *, metadata: bool = True) -> Iterator[dict[str, Any]]:
    """Envelope dicts (the JSON form `taifa_events.decode` reads) of a plausible log, in position order.

    Per domain: registered, verified, then 1-4 credential cycles (created, deactivated, created...). Each event
    carries the envelope metadata the API writes (actor, source address, request id) unless `metadata` is False.
    """
    rng = random.Random(seed)
    lanes: list[dict[str, Any]] = []
    position = 0
    while position < total:
        if len(lanes) < active:
            account, domain = (
                uuid.UUID(int=rng.getrandbits(128), version=4),
                uuid.UUID(int=rng.getrandbits(128), version=4),
            )
            name = f"d{domain.hex[:12]}.example"
            lanes.append({"account": str(account), "domain": str(domain), "name": name, "version": 0,
                          "steps": 3 + 2 * rng.randrange(0, 3), "credential": None})  # fmt: skip
        lane = lanes[rng.randrange(len(lanes))]
        position += 1
        step = lane["version"]
        username = f"{lane['account'][:8]}@{lane['name']}"
        common = {"account_id": lane["account"], "domain_id": lane["domain"]}
        if step == 0:
            event_type, stream, version = "DomainRegistered", lane["domain"], 1
            data = {
                **common,
                "name": lane["name"],
                "verification_name": f"_taifa.{lane['name']}",
                "verification_value": f"taifa-verification={rng.getrandbits(64):016x}",
                "created_at": _ts(position),
            }
        elif step == 1:
            event_type, stream, version = "DomainVerified", lane["domain"], 2
            data = {**common, "name": lane["name"], "verified_at": _ts(position), "method": "dns"}
        elif lane["credential"] is None:
            lane["credential"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            event_type, stream, version = "CredentialCreated", lane["credential"], 1
            data = {
                **common,
                "credential_id": lane["credential"],
                "domain": lane["name"],
                "username": username,
                "secret_hash": f"{rng.getrandbits(256):064x}",
                "hash_scheme": "sha256",
                "created_at": _ts(position),
            }
        else:
            event_type, stream, version = "CredentialDeactivated", lane["credential"], 2
            data = {
                **common,
                "credential_id": lane["credential"],
                "username": username,
                "deactivated_at": _ts(position),
            }
            lane["credential"] = None
        lane["version"] += 1
        if lane["version"] >= lane["steps"]:
            lanes.remove(lane)
        event = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "event_type": event_type,
            "schema_version": 2 if event_type == "CredentialCreated" else 1,
            "stream_id": stream,
            "stream_version": version,
            "position": position,
            "occurred_at": _ts(position),
            "correlation_id": "bench",
            "data": data,
        }
        if metadata:  # as the API writes it since issue 17 (derived, not drawn: the events stay the same)
            event["metadata"] = {
                "actor": {"type": "api_key", "id": lane["account"]},
                "source_ip": f"198.51.100.{position % 250 + 1}",
                "request_id": f"req-{position}",
            }
        yield event


def topic_of(event: dict[str, Any]) -> str:
    return topics.DOMAINS if event["event_type"].startswith("Domain") else topics.SMTP_CREDENTIALS


async def produce(bootstrap: str, total: int, keyring: Keyring, *, metadata: bool = True) -> float:
    """Send `total` generated events, each signed as the API's publisher signs (the projector verifies)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, acks="all", linger_ms=20, max_batch_size=256 * 1024
    )
    await producer.start()
    began = time.perf_counter()
    try:
        pending = []
        for event in generate(total, seed=7, metadata=metadata):
            value = json.dumps(event, separators=(",", ":")).encode()
            # The headers the API's publisher sends with every event, its signature included.
            headers = kafka_headers(event["event_type"], event["event_id"], event["schema_version"])
            headers += keyring.headers(value)
            key = event["data"]["domain_id"].encode()
            pending.append(await producer.send(topic_of(event), value, key=key, headers=headers))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - began


async def fill_event_store(database_url: str, total: int, *, metadata: bool = True) -> float:
    conn = await asyncpg.connect(database_url)
    began = time.perf_counter()
    try:
        await conn.execute(EVENT_STORE_DDL)
        await conn.execute("TRUNCATE event_store")
        chunk: list[tuple[Any, ...]] = []
        for e in generate(total, seed=11, metadata=metadata):
            chunk.append((
                e["position"], uuid.UUID(e["event_id"]), e["event_type"], e["schema_version"],
                uuid.UUID(e["stream_id"]), e["stream_version"], topic_of(e), e["data"]["domain_id"],
                BASE + timedelta(milliseconds=e["position"]), e["correlation_id"], json.dumps(e["data"]),
                json.dumps(e["metadata"]) if "metadata" in e else None,
            ))  # fmt: skip
            if len(chunk) >= 50_000:
                await conn.copy_records_to_table("event_store", records=chunk, columns=EVENT_STORE_COLUMNS)
                chunk = []
        if chunk:
            await conn.copy_records_to_table("event_store", records=chunk, columns=EVENT_STORE_COLUMNS)
    finally:
        await conn.close()
    return time.perf_counter() - began

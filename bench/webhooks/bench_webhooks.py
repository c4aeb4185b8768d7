"""Webhook dispatcher benchmark (`make bench-webhooks`, issue 17): deliveries per second and the event-to-delivery
delay with 100 endpoints on a local receiver, one of them dead.

Starts its own PostgreSQL and Tansu broker (taifa_localstack), migrates, writes 100 endpoints of one account
subscribed to every event (99 on a receiver in this process, which answers 204 at once; one on a port that accepts
connections and never answers, so each attempt there holds a slot until the request timeout), and runs
`taifa-webhooks run` as in production. Signed events are produced straight to Kafka (as the API's outbox would):

1. burst: EVENTS events at once -> EVENTS x 99 healthy deliveries: deliveries/s from the first event produced to the
   last delivery received, and the dispatcher's CPU per delivery;
2. paced: events at half the burst rate for PACED_SECONDS: p50/p99/max delay from the event's time to its arrival at
   the receiver, over the healthy endpoints.

    python bench/webhooks/bench_webhooks.py            # 100 events burst, 20 s paced
    python bench/webhooks/bench_webhooks.py --quick    # 30 events burst, 8 s paced
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import shutil
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer
from taifa_api.adapters.webhook_secrets import WebhookSecretBox, new_webhook_secret
from taifa_events import DomainRegistered, encode, kafka_headers, make_envelope
from taifa_events.signing import Keyring
from taifa_localstack import ServiceProcess, Stack, free_port, run_once
from taifa_runtime import loop as runtime_loop

ENDPOINTS = 100
HEALTHY = ENDPOINTS - 1


class Receiver:
    """A minimal HTTP/1.1 server (keep-alive): 204 to every request, recording (path, webhook-id, arrival, event
    time)."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[str, str, float, float]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # HTTP/1.1 keep-alive, as real receivers do
                head = await reader.readuntil(b"\r\n\r\n")
                arrived = time.time()
                lines = head.split(b"\r\n")
                path = lines[0].split(b" ")[1].decode()
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
                stamp = body.split(b'"timestamp":"', 1)[1].split(b'"', 1)[0].decode()
                occurred = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                self.arrivals.append((path, headers.get(b"webhook-id", b"").decode(), arrived, occurred))
        except (asyncio.IncompleteReadError, ConnectionError, IndexError, ValueError):
            pass
        finally:
            writer.close()


async def black_hole() -> tuple[asyncio.Server, int, list[asyncio.StreamWriter]]:
    """Accepts connections and never answers (a dead endpoint at its most expensive)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], held


async def create_endpoints(database_url: str, keys: str, receiver: int, dead: int) -> uuid.UUID:
    box = WebhookSecretBox.parse(keys)
    account = uuid.uuid4()
    created = datetime.now(UTC) - timedelta(minutes=1)
    conn = await asyncpg.connect(database_url)
    try:
        for n in range(ENDPOINTS):
            webhook_id = uuid.uuid4()
            url = f"http://127.0.0.1:{dead}/dead" if n == 0 else f"http://127.0.0.1:{receiver}/hook/{n}"
            await conn.execute(
                """INSERT INTO webhook_endpoints (id, account_id, url, events, status, secret_ciphertext, created_at)
                   VALUES ($1, $2, $3, '{*}', 'enabled', $4, $5)""",
                webhook_id, account, url, box.encrypt(new_webhook_secret(), webhook_id), created,
            )  # fmt: skip
    finally:
        await conn.close()
    return account


class Events:
    def __init__(self, bootstrap: str, keyring: Keyring, account: uuid.UUID) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all", linger_ms=5)
        self.keyring = keyring
        self.account = account

    async def send(self, count: int) -> None:
        futures = []
        for _ in range(count):
            domain = uuid.uuid4()
            data = DomainRegistered(
                domain_id=domain, account_id=self.account, name=f"{domain.hex[:12]}.example",
                verification_name="_taifa", verification_value="v", created_at=datetime.now(UTC),
            )  # fmt: skip
            envelope = make_envelope(data, stream_version=1, position=1, correlation_id="bench")
            value = encode(envelope)
            headers = kafka_headers(envelope.event_type, envelope.event_id, envelope.schema_version)
            futures.append(
                await self.producer.send(
                    envelope.topic, value, key=envelope.key, headers=headers + self.keyring.headers(value)
                )
            )
        for future in futures:
            await future


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_for_count(receiver: Receiver, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while len(receiver.arrivals) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(receiver.arrivals)} of {count} deliveries arrived within {within:.0f} s")
        await asyncio.sleep(0.05)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(stack: Stack, burst_events: int, paced_seconds: float, concurrency: int) -> None:
    dispatcher: ServiceProcess | None = None
    try:
        keys = "bench:" + base64.b64encode(secrets.token_bytes(32)).decode()
        health = free_port()
        env = {
            **stack.env(),
            "TAIFA_WEBHOOK_SECRET_KEYS": keys,
            "TAIFA_WEBHOOK_ALLOW_HTTP": "true",
            "TAIFA_WEBHOOKS_HEALTH_HOST": "127.0.0.1",
            "TAIFA_WEBHOOKS_HEALTH_PORT": str(health),
            "TAIFA_WEBHOOKS_CONCURRENCY": str(concurrency),
            "TAIFA_API_LOG_LEVEL": "warning",
        }
        run_once([str(Path(sys.executable).parent / "taifa-api"), "migrate"], env=env)
        receiver = Receiver()
        await receiver.start()
        dead_server, dead_port, held = await black_hole()
        account = await create_endpoints(env["TAIFA_DATABASE_URL"], keys, receiver.port, dead_port)
        dispatcher = ServiceProcess(
            "taifa-webhooks", [str(Path(sys.executable).parent / "taifa-webhooks"), "run"], stack.workdir / "webhooks",
            env=env, ready_url=f"http://127.0.0.1:{health}/readyz",
        )  # fmt: skip
        dispatcher.start(timeout=60)
        keyring = Keyring.parse(env["TAIFA_EVENT_SIGNING_KEYS"], env["TAIFA_EVENT_SIGNING_KEY_ID"])
        events = Events(stack.kafka.bootstrap, keyring, account)
        await events.producer.start()
        try:
            # Warm-up: the consumer group has joined and every healthy endpoint answered once.
            await events.send(1)
            await wait_for_count(receiver, HEALTHY, 120)
            load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
            print(
                f"{ENDPOINTS} endpoints (1 dead: accepts, never answers), concurrency {concurrency}; "
                f"{os.cpu_count()} CPUs, load average {load} (PostgreSQL, the broker and this receiver share them)",
                flush=True,
            )

            receiver.arrivals.clear()
            pid = dispatcher.pid
            assert pid is not None
            cpu0, began = cpu_seconds(pid), time.time()
            await events.send(burst_events)
            await wait_for_count(receiver, burst_events * HEALTHY, 600)
            elapsed = max(a[2] for a in receiver.arrivals) - began
            cpu = cpu_seconds(pid) - cpu0
            rate = len(receiver.arrivals) / elapsed
            delays = [a[2] - a[3] for a in receiver.arrivals]
            print(
                f"burst   {burst_events} events -> {len(receiver.arrivals)} deliveries in {elapsed:.2f} s: "
                f"{rate:.0f} deliveries/s, dispatcher CPU {1000 * cpu / len(receiver.arrivals):.2f} ms/delivery, "
                f"delay p50 {statistics.median(delays):.2f} s p99 {percentile(delays, 0.99):.2f} s",
                flush=True,
            )

            receiver.arrivals.clear()
            per_second = max(1.0, rate / HEALTHY / 2)
            sent, start = 0, time.monotonic()
            while (now := time.monotonic() - start) < paced_seconds:
                due = int(now * per_second) + 1
                if due > sent:
                    await events.send(due - sent)
                    sent = due
                await asyncio.sleep(0.01)
            await wait_for_count(receiver, sent * HEALTHY, 300)
            delays = [a[2] - a[3] for a in receiver.arrivals]
            ids = [a[1] for a in receiver.arrivals]
            print(
                f"paced   {per_second:.1f} events/s ({per_second * HEALTHY:.0f} deliveries/s) "
                f"for {paced_seconds:.0f} s: "
                f"{len(delays)} deliveries, event->delivery p50 {1000 * statistics.median(delays):.0f} ms, "
                f"p99 {1000 * percentile(delays, 0.99):.0f} ms, max {1000 * max(delays):.0f} ms; "
                f"duplicates {len(ids) - len(set(ids))}, dead endpoint attempts held: {len(held)}",
                flush=True,
            )
        finally:
            await events.producer.stop()
            dead_server.close()
    finally:
        if dispatcher is not None:
            dispatcher.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke-sized run")
    parser.add_argument("--concurrency", type=int, default=50, help="TAIFA_WEBHOOKS_CONCURRENCY (default 50)")
    args = parser.parse_args()
    burst, paced = (30, 8.0) if args.quick else (100, 20.0)
    stack = Stack()  # started outside the event loop (it creates the topics with asyncio.run)
    stack.start()
    try:
        runtime_loop.run(run(stack, burst, paced, args.concurrency))
    finally:
        stack.stop()
        shutil.rmtree(stack.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

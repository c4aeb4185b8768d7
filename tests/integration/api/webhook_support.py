"""Helpers of the webhook dispatcher's tests: a real HTTP receiver on 127.0.0.1 (asyncio streams, HTTP/1.1), endpoints
written straight into `webhook_endpoints`, and the delivery loop wired with the real store, sender and signer."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
from taifa_api.adapters.webhook_http import PinnedWebhookSender
from taifa_api.adapters.webhook_resolver import resolve_addresses
from taifa_api.adapters.webhook_secrets import WebhookSecretBox, generate_key_ring_entry, new_webhook_secret
from taifa_api.adapters.webhook_signing import StandardWebhooksSigner
from taifa_api.adapters.webhook_store import PostgresDeliveryStore
from taifa_api.application.webhook_dispatch import DeliveryLoop, Ingestor
from taifa_api.application.webhook_ports import FeedEvent

SECRET_KEYS = generate_key_ring_entry("t1")  # made at import, never stored


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """Answers every POST with `status` (or hangs, or closes the connection), recording each request; connections
    are kept alive.

    `stop()` closes the port (connections refused), `start()` opens the same port again.
    """

    status: int = 200
    mode: str = "answer"  # answer | hang | close
    refuse: bytes | None = None  # a body containing this gets 400 (a payload the receiver cannot take), others `status`
    body: bytes = b"ok"
    extra_headers: dict[str, str] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _hung: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True, ssl=tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for writer in self._hung:
                writer.close()
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """HTTP/1.1 with keep-alive: requests on one connection are answered in turn until the client closes it."""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(Request(method, path, headers, body, time.monotonic()))
                if self.mode == "hang":
                    self._hung.append(writer)
                    await asyncio.Event().wait()
                if self.mode != "answer":
                    return
                extra = "".join(f"{k}: {v}\r\n" for k, v in self.extra_headers.items())
                status = 400 if self.refuse is not None and self.refuse in body else self.status
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Length: {len(self.body)}\r\n{extra}\r\n".encode() + self.body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def receiver(tls: ssl.SSLContext | None = None, **options: object) -> AsyncIterator[Receiver]:
    r = Receiver(**options)  # type: ignore[arg-type]
    await r.start(tls)
    try:
        yield r
    finally:
        await r.stop()


def secret_box() -> WebhookSecretBox:
    return WebhookSecretBox.parse(SECRET_KEYS)


async def create_endpoint(
    pool: asyncpg.Pool,
    url: str,
    *,
    account_id: uuid.UUID | None = None,
    events: tuple[str, ...] = ("*",),
    previous_secret: str | None = None,
    created_at: datetime | None = None,
) -> tuple[uuid.UUID, uuid.UUID, str]:
    """(webhook id, account id, secret) of a new enabled endpoint; `previous_secret` still signs for 24 h."""
    webhook_id, account_id = uuid.uuid4(), account_id or uuid.uuid4()
    secret, box = new_webhook_secret(), secret_box()
    await pool.execute(
        """INSERT INTO webhook_endpoints (id, account_id, url, events, status, secret_ciphertext,
               previous_secret_ciphertext, previous_secret_expires_at, created_at)
           VALUES ($1, $2, $3, $4, 'enabled', $5, $6, $7, $8)""",
        webhook_id,
        account_id,
        url,
        list(events),
        box.encrypt(secret, webhook_id),
        box.encrypt(previous_secret, webhook_id) if previous_secret else None,
        datetime.now(UTC) + timedelta(hours=24) if previous_secret else None,
        created_at or datetime.now(UTC) - timedelta(minutes=1),
    )
    return webhook_id, account_id, secret


def feed_event(account_id: uuid.UUID, event_type: str = "smtp_credential.deactivated") -> FeedEvent:
    event_id, now = uuid.uuid4(), datetime.now(UTC)
    stamp = now.isoformat().replace("+00:00", "Z")
    data = {"id": str(event_id), "type": event_type, "occurred_at": stamp, "actor": {"type": "api_key", "id": "k"},
            "source_ip": None, "subject": {"type": "smtp_credential", "id": str(uuid.uuid4())}, "data": {}}  # fmt: skip
    return FeedEvent(event_id, account_id, event_type, now, {"type": event_type, "timestamp": stamp, "data": data})


Resolve = Callable[[str, int], Awaitable[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]]]


def resolver(names: dict[str, str]) -> Resolve:
    """Names of `names` resolve to the address given (changeable while the test runs); others as the system says."""

    async def resolve(host: str, port: int) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
        if host in names:
            return (ipaddress.ip_address(names[host]),)
        return await resolve_addresses(host, port, 2.0)

    return resolve


@dataclass
class Dispatch:
    store: PostgresDeliveryStore
    loop: DeliveryLoop
    ingestor: Ingestor
    sender: PinnedWebhookSender


@contextlib.asynccontextmanager
async def delivering(
    pool: asyncpg.Pool,
    *,
    names: dict[str, str] | None = None,
    allow_http: bool = True,
    request_timeout: float = 2.0,
    retry_scale: float = 1e-5,
    verify: ssl.SSLContext | bool = True,
) -> AsyncIterator[Dispatch]:
    """The delivery loop running on `pool` until the block ends (the consumer side is `ingestor`)."""
    store = PostgresDeliveryStore(pool, secret_box())
    sender = PinnedWebhookSender(
        allow_http=allow_http,
        connect_timeout=1.0,
        request_timeout=request_timeout,
        resolve=resolver(names or {}),
        verify=verify,
    )
    loop = DeliveryLoop(
        store, sender, StandardWebhooksSigner(), concurrency=10, lease_seconds=request_timeout + 5,
        idle_poll_seconds=0.02, retry_scale=retry_scale,
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop, retry_seconds=0.1))
    try:
        yield Dispatch(store, loop, Ingestor(store, loop.wake), sender)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await sender.aclose()


async def wait_for(check: Callable[[], Awaitable[object]], timeout: float = 10.0, every: float = 0.02) -> object:
    """Poll `check` until it returns something truthy (returned), failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {check}")
        await asyncio.sleep(every)

"""Helpers and fixtures of the relay integration tests (imported by conftest.py and the test modules):
trustme certificates, the real mail sink as upstream, the real Redis (a database index of the relay tests' own),
and relays started in a thread with their own loop."""

from __future__ import annotations

import asyncio
import inspect
import mailbox
import smtplib
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import trustme
from taifa_events.auth_cache import REVOCATIONS_CHANNEL, AuthCacheEntry, revocation_message
from taifa_localstack import ServiceProcess, free_port, wait_until
from taifa_localstack.authcache import next_position, rotate_secret, seed_credential, write_entry, write_later_state
from taifa_relay.entrypoints.server import Relay
from taifa_relay.settings import Settings

from tests.integration.relay.raw_client import Raw, login_raw, plain_auth_arg  # noqa: F401 - re-exported for the tests

RELAY_REDIS_DB = 5  # the relay tests' own database index: their throttling counters never meet other tests'


@dataclass
class Certs:
    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path
    tmp: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return context


def _write_cert(ca: trustme.CA, directory: Path, name: str, *hosts: str) -> tuple[Path, Path]:
    issued = ca.issue_cert(*hosts, key_type=trustme.KeyType.ECDSA)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    for pem in issued.cert_chain_pems[1:]:
        cert.write_bytes(cert.read_bytes() + pem.bytes())
    issued.private_key_pem.write_to_path(str(key))
    return cert, key


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    tmp = tmp_path_factory.mktemp("relay-certs")
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert, key = _write_cert(ca, tmp, "relay", "localhost", "127.0.0.1")
    return Certs(ca, ca_file, cert, key, tmp)


@dataclass
class Sink:
    host: str
    port: int
    maildir: Path
    process: ServiceProcess

    def messages(self) -> list[bytes]:
        box = mailbox.Maildir(self.maildir, create=False)
        return [box.get_bytes(key) for key in list(box.iterkeys())]

    def count(self) -> int:
        return len(list((self.maildir / "new").iterdir()))

    def clear(self) -> None:
        box = mailbox.Maildir(self.maildir, create=False)
        box.clear()


def start_sink(workdir: Path, certs: Certs | None) -> Sink:
    port = free_port()
    maildir = workdir / "Maildir"
    command = [
        sys.executable,
        "-m",
        "taifa_localstack.mailsink",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--maildir",
        str(maildir),
    ]
    if certs is not None:
        command += ["--tls-cert", str(certs.cert_file), "--tls-key", str(certs.key_file)]
    process = ServiceProcess("mailsink", command, workdir)
    process.start()

    def accepting() -> bool:
        with smtplib.SMTP("127.0.0.1", port, timeout=2) as probe:
            return probe.noop()[0] == 250

    wait_until(accepting, 20, "mailsink accepting SMTP")
    return Sink("127.0.0.1", port, maildir, process)


@pytest.fixture(scope="session")
def sink(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Sink]:
    """The real mail sink (with STARTTLS) as the relay's upstream."""
    started = start_sink(tmp_path_factory.mktemp("mailsink"), certs)
    yield started
    started.process.stop()


@pytest.fixture(scope="session")
def relay_redis_url(redis_server: Any) -> str:
    return str(redis_server.url).rsplit("/", 1)[0] + f"/{RELAY_REDIS_DB}"


@pytest.fixture
def rdb(relay_redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(relay_redis_url)
    for key in client.scan_iter("taifa:relay:authfail:*"):
        client.delete(key)
    yield client
    client.close()


@dataclass
class Credential:
    username: str
    password: str
    domain: str
    entry: AuthCacheEntry


class Credentials:
    """Writes auth-cache entries the way the projector does (AuthCacheEntry.to_redis, a position above the
    watermark, the watermark raised, the epoch set) and publishes revocations and "credential changed" notices in
    the projector's form (`notify=False`: as if the relay missed the notice)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def create(self, domain: str | None = None, *, active: bool = True, username: str | None = None) -> Credential:
        seeded = seed_credential(self.client, domain, active=active, username=username)
        return Credential(seeded.username, seeded.password, seeded.domain, seeded.entry)

    def deactivate(self, credential: Credential, *, publish: bool = True) -> None:
        tombstone = credential.entry.model_copy(update={"active": False, "position": next_position(self.client)})
        write_entry(self.client, credential.username, tombstone)
        if publish:
            self.publish_revocation(credential)

    # --- the credential lifecycle (v2 entries, as the projector writes them) ---------------------
    def rotate(self, credential: Credential, grace_seconds: float, *, notify: bool = True) -> str:
        """A new secret; the previous one works `grace_seconds` more. Returns the previous password, and the
        credential logs in with the new one from now on."""
        previous = credential.password
        credential.password, credential.entry = rotate_secret(
            self.client, credential.username, credential.entry, grace_seconds, notify=notify
        )
        return previous

    def revoke_previous_secret(self, credential: Credential, *, notify: bool = True) -> None:
        """DELETE .../secrets/{previous}: only the newest secret is left."""
        self.change(credential, notify=notify, secrets=credential.entry.secrets[:1])

    def change(self, credential: Credential, *, notify: bool = True, **changes: Any) -> None:
        """A later state of the entry (status, expires_at, allowed_cidrs, secrets...)."""
        credential.entry = write_later_state(
            self.client, credential.username, credential.entry, notify=notify, **changes
        )

    def publish_revocation(self, credential: Credential) -> None:
        self.client.publish(
            REVOCATIONS_CHANNEL, revocation_message(credential.username, credential.entry.credential_id)
        )


@pytest.fixture
def credentials(rdb: redis.Redis) -> Credentials:
    return Credentials(rdb)


class RelayThread:
    """A Relay on its own event loop (uvloop, as in production) in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop: asyncio.AbstractEventLoop | None = None
        self.relay: Relay | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> RelayThread:
        import uvloop

        def run() -> None:
            self.loop = uvloop.new_event_loop()
            asyncio.set_event_loop(self.loop)
            try:
                self.relay = Relay.from_settings(self.settings)
                self.loop.run_until_complete(self.relay.start())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                self._error = exc
                self._started.set()
                return
            self._started.set()
            self.loop.run_forever()
            self.loop.close()

        self._thread = threading.Thread(target=run, name="relay-under-test", daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise self._error
        return self

    @property
    def submission_port(self) -> int:
        assert self.relay is not None
        return self.relay.submission_port

    @property
    def smtps_port(self) -> int:
        assert self.relay is not None
        return self.relay.smtps_port

    @property
    def health_port(self) -> int:
        assert self.relay is not None
        return self.relay.health.port

    def call(self, coro: Any, timeout: float = 30) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop is None or self.relay is None or not self.loop.is_running():
            return
        self.call(self.relay.drain(), timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        assert self._thread is not None
        self._thread.join(10)


def relay_settings(certs: Certs, sink: Sink, redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "relay_hostname": "relay.test",
        "relay_bind_host": "127.0.0.1",
        "relay_submission_port": 0,
        "relay_smtps_port": 0,
        "relay_health_port": 0,
        "relay_tls_cert_file": certs.cert_file,
        "relay_tls_key_file": certs.key_file,
        "relay_upstream_host": sink.host,
        "relay_upstream_port": sink.port,
        "relay_upstream_ca_file": certs.ca_file,
        "relay_upstream_timeout_seconds": 10,
        "relay_drain_grace_seconds": 0.5,
        "relay_max_connections_per_minute": 100_000,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def make_relay(certs: Certs, sink: Sink, relay_redis_url: str) -> Iterator[Any]:
    """Start a relay with setting overrides; every relay started is stopped after the test."""
    started: list[RelayThread] = []

    def factory(**overrides: Any) -> RelayThread:
        overrides.setdefault("redis_url", relay_redis_url)
        url = overrides.pop("redis_url")
        thread = RelayThread(relay_settings(certs, sink, url, **overrides)).start()
        started.append(thread)
        return thread

    yield factory
    for thread in started:
        thread.stop()


@pytest.fixture(scope="module")
def shared_relay(certs: Certs, sink: Sink, redis_server: Any) -> Iterator[RelayThread]:
    """One relay with default limits for the tests that do not change settings."""
    url = str(redis_server.url).rsplit("/", 1)[0] + f"/{RELAY_REDIS_DB}"
    thread = RelayThread(relay_settings(certs, sink, url)).start()
    yield thread
    thread.stop()


@dataclass
class Client:
    """Opens smtplib sessions to one relay on either port, already over TLS when asked."""

    relay: RelayThread
    certs: Certs

    def port(self, kind: str) -> int:
        return self.relay.submission_port if kind == "submission" else self.relay.smtps_port

    def plain(self, *, source: str = "127.0.0.1") -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.relay.submission_port, timeout=10, source_address=(source, 0))

    def tls(self, kind: str = "submission", *, source: str = "127.0.0.1") -> smtplib.SMTP:
        context = self.certs.client_context()
        if kind == "submission":
            client = smtplib.SMTP("localhost", self.relay.submission_port, timeout=10, source_address=(source, 0))
            client.ehlo("client.test")
            client.starttls(context=context)
        else:
            client = smtplib.SMTP_SSL(
                "localhost", self.relay.smtps_port, timeout=10, context=context, source_address=(source, 0)
            )
        client.ehlo("client.test")
        return client

    def login(
        self, credential: Credential, kind: str = "submission", mechanism: str = "PLAIN", *, source: str = "127.0.0.1"
    ) -> smtplib.SMTP:
        client = self.tls(kind, source=source)
        code, _ = auth(client, mechanism, credential.username, credential.password)
        assert code == 235
        return client


def auth(client: smtplib.SMTP, mechanism: str, username: str, password: str) -> tuple[int, bytes]:
    """AUTH with one mechanism; returns the final reply instead of raising."""
    client.user, client.password = username, password
    try:
        if mechanism == "PLAIN":
            return client.auth("PLAIN", client.auth_plain)
        return client.auth("LOGIN", client.auth_login, initial_response_ok=False)
    except smtplib.SMTPAuthenticationError as exc:
        return exc.smtp_code, exc.smtp_error


def message(
    sender: str,
    to: str = "rcpt@dest.example",
    *,
    subject: str = "hello",
    body: str = "Hi.\r\n",
    from_header: str | None = None,
) -> bytes:
    return (
        f"From: {from_header or sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@test>\r\n\r\n{body}"
    ).encode()


@pytest.fixture
def client(shared_relay: RelayThread, certs: Certs) -> Client:
    return Client(shared_relay, certs)


def metric(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def until(check: Callable[[], bool | Awaitable[bool]], seconds: float, what: str) -> None:
    """Poll `check` (a plain or an async predicate) without blocking the event loop until it holds; fail after
    `seconds`, naming `what`."""
    deadline = time.monotonic() + seconds
    while True:
        held = check()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        await asyncio.sleep(0.02)


def socket_queues(port: int) -> list[tuple[int, int]]:
    """(send queue, receive queue) of every IPv4 socket on 127.0.0.1 whose local or remote port is `port`: a
    listener's receive queue is its connections not accepted yet."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    queues = []
    for row in rows:
        local, remote, _, tx_rx = row.split()[1:5]
        if f"0100007F:{port:04X}" in (local, remote):
            tx, rx = tx_rx.split(":")
            queues.append((int(tx, 16), int(rx, 16)))
    return queues

"""`taifa-relay run --workers 2` (TAIFA_RELAY_WORKERS): two relay processes share the SMTP listeners with
SO_REUSEPORT; each accepts connections (its own health port: TAIFA_RELAY_HEALTH_PORT + index) and relays mail, and
SIGTERM to the supervisor stops both."""

from __future__ import annotations

import smtplib
import socket
import sys
import time
import urllib.request
from pathlib import Path

from taifa_localstack import ServiceProcess, free_port, wait_until
from taifa_localstack.process import log_tail

from tests.integration.relay.support import Certs, Credentials, Sink, message


def _sessions(health_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("taifa_relay_sessions_total{"))


def _ready(health_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _two_free_ports(avoid: tuple[int, ...]) -> int:
    """A port p such that p and p + 1 are both free right now (worker i serves health on p + i)."""
    for _ in range(100):
        port = free_port()
        if port in avoid or port + 1 in avoid:
            continue
        with socket.socket() as first, socket.socket() as second:
            try:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports on 127.0.0.1")


def test_two_workers_share_the_listeners_and_both_accept(
    tmp_path: Path, certs: Certs, sink: Sink, relay_redis_url: str, credentials: Credentials
) -> None:
    submission, smtps = free_port(), free_port()
    health = _two_free_ports(avoid=(submission, smtps))
    env = {
        "TAIFA_REDIS_URL": relay_redis_url,
        "TAIFA_RELAY_HOSTNAME": "relay.test",
        "TAIFA_RELAY_BIND_HOST": "127.0.0.1",
        "TAIFA_RELAY_SUBMISSION_PORT": str(submission),
        "TAIFA_RELAY_SMTPS_PORT": str(smtps),
        "TAIFA_RELAY_HEALTH_PORT": str(health),
        "TAIFA_RELAY_TLS_CERT_FILE": str(certs.cert_file),
        "TAIFA_RELAY_TLS_KEY_FILE": str(certs.key_file),
        "TAIFA_RELAY_UPSTREAM_HOST": sink.host,
        "TAIFA_RELAY_UPSTREAM_PORT": str(sink.port),
        "TAIFA_RELAY_UPSTREAM_CA_FILE": str(certs.ca_file),
        "TAIFA_RELAY_DRAIN_GRACE_SECONDS": "5",
    }
    executable = str(Path(sys.executable).parent / "taifa-relay")
    process = ServiceProcess("relay-workers", [executable, "run", "--workers", "2"], tmp_path, env=env)
    process.start()
    try:
        wait_until(
            lambda: _ready(health) and _ready(health + 1),
            60,
            "both relay workers ready",
            on_fail=lambda reason: AssertionError(f"{reason}\n{log_tail(process.log_path)}"),
        )
        cred = credentials.create()
        sender = f"app@{cred.domain}"
        # The kernel hashes each connection's addresses and ports to one of the two listening sockets: 40
        # connections all landing on one worker has a probability of 2**-39.
        for n in range(40):
            with smtplib.SMTP("localhost", submission, timeout=10) as smtp:
                smtp.starttls(context=certs.client_context())
                if n % 10 == 0:
                    smtp.login(cred.username, cred.password)
                    assert smtp.sendmail(sender, ["a@dest.example"], message(sender)) == {}
                else:
                    assert smtp.noop()[0] == 250
        first, second = _sessions(health), _sessions(health + 1)
        assert first > 0 and second > 0 and first + second == 40
        assert process.pid is not None
        started = time.monotonic()
        process.stop()
        assert time.monotonic() - started < 30
        assert not _ready(health) and not _ready(health + 1)
    finally:
        process.stop()

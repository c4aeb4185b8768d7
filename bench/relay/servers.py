"""The processes of `make bench-relay`: the mail sink, `taifa-relay run` (with its benchmark settings), the bare
aiosmtpd server, and the certificate they all present. Redis and Postfix are started by `bench_relay` itself."""

from __future__ import annotations

import os
import smtplib
import sys
from pathlib import Path

import trustme
from taifa_localstack import ServiceProcess, free_port, wait_until

HERE = Path(__file__).resolve().parent
TMPFS = Path("/dev/shm")  # noqa: S108 - only a parent: the sink gets a private mkdtemp directory in it


def write_certificate(work: Path) -> tuple[Path, Path, Path]:
    """One ECDSA P-256 certificate for 127.0.0.1/localhost, presented by every server: (cert, key, CA file)."""
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    issued = ca.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.ECDSA)
    cert, key, ca_file = work / "relay.crt", work / "relay.key", work / "ca.pem"
    cert.write_bytes(b"".join(p.bytes() for p in issued.cert_chain_pems))
    key.write_bytes(issued.private_key_pem.bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    return cert, key, ca_file


def smtp_ready(port: int) -> bool:
    with smtplib.SMTP("127.0.0.1", port, timeout=2) as probe:
        return probe.noop()[0] == 250


def sink_maildir_parent(choice: str) -> Path | None:
    """Where the sink's Maildir goes: tmpfs by default (the sink stands in for an upstream MTA on another
    machine; its file-system costs are not the relay's), or the bench's work directory on disk."""
    if choice == "tmpfs" and TMPFS.is_dir():
        return TMPFS
    return None


def start_sink(work: Path, maildir: Path) -> tuple[ServiceProcess, int]:
    port = free_port()
    command = [sys.executable, "-m", "taifa_localstack.mailsink", "--port", str(port), "--maildir", str(maildir)]
    sink = ServiceProcess("mailsink", command, work)
    sink.start()
    wait_until(lambda: smtp_ready(port), 20, "mailsink")
    return sink, port


def relay_env(redis_url: str, cert: Path, key: Path, sink_port: int, recheck_cache_seconds: float) -> dict[str, str]:
    """The relay's settings for the bench: the per-address caps lifted (one load generator stands for many clients)."""
    return {
        "TAIFA_REDIS_URL": redis_url,
        "TAIFA_RELAY_HOSTNAME": "relay.bench",
        "TAIFA_RELAY_BIND_HOST": "127.0.0.1",
        "TAIFA_RELAY_TLS_CERT_FILE": str(cert),
        "TAIFA_RELAY_TLS_KEY_FILE": str(key),
        "TAIFA_RELAY_UPSTREAM_HOST": "127.0.0.1",
        "TAIFA_RELAY_UPSTREAM_PORT": str(sink_port),
        # The local sink offers no STARTTLS here: the figures are the relay's own cost (Postfix relays in plain too).
        "TAIFA_RELAY_UPSTREAM_TLS": "none",
        "TAIFA_RELAY_MAX_SESSIONS_PER_CLIENT": "100000",
        "TAIFA_RELAY_MAX_CONNECTIONS_PER_MINUTE": "100000000",
        "TAIFA_RELAY_MAX_AUTH_FAILURES_PER_CONNECTION": "100000000",
        "TAIFA_RELAY_MAX_AUTH_FAILURES_PER_ADDRESS": "100000000",
        "TAIFA_RELAY_MAX_AUTH_FAILURES_PER_ADDRESS_USERNAME": "100000000",
        "TAIFA_RELAY_ERROR_SOFT_LIMIT": "100000000",
        "TAIFA_RELAY_ERROR_HARD_LIMIT": "100000000",
        "TAIFA_RELAY_UPSTREAM_POOL_SIZE": "32",
        "TAIFA_RELAY_DRAIN_GRACE_SECONDS": "2",
        "TAIFA_RELAY_RECHECK_CACHE_SECONDS": str(recheck_cache_seconds),
        "TAIFA_RELAY_PLAN_DAILY_QUOTA_FREE": "1000000000",
        "TAIFA_RELAY_USAGE_ENABLED": "true",
    }


class RelayUnderTest:
    """One `taifa-relay run` on free ports, with `env` on top of `relay_env`."""

    def __init__(self, name: str, work: Path, env: dict[str, str], workers: int = 1) -> None:
        self.port, smtps, self.health_port = free_port(), free_port(), free_port()
        self.env = {
            **env,
            "TAIFA_RELAY_SUBMISSION_PORT": str(self.port),
            "TAIFA_RELAY_SMTPS_PORT": str(smtps),
            "TAIFA_RELAY_HEALTH_PORT": str(self.health_port),
            "TAIFA_RELAY_WORKERS": str(workers),
        }
        command = [str(Path(sys.executable).parent / "taifa-relay"), "run"]
        if os.environ.get("BENCH_RELAY_PROFILE"):  # cProfile output, to find the relay's hot spots
            profile = os.environ["BENCH_RELAY_PROFILE"]
            command = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "taifa_relay.entrypoints.cli", "run"]
        self.process = ServiceProcess(
            name, command, work, env=self.env, ready_url=f"http://127.0.0.1:{self.health_port}/readyz"
        )

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid


def start_bare(work: Path, cert: Path, key: Path, tls_layer: str) -> tuple[ServiceProcess, int]:
    port = free_port()
    bare = ServiceProcess(
        "bare", [sys.executable, str(HERE / "bare_server.py"), str(port), str(cert), str(key), tls_layer], work
    )
    bare.start()
    wait_until(lambda: smtp_ready(port), 20, "bare aiosmtpd")
    return bare, port

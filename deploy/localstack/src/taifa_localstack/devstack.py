"""The whole Taifa Mail stack on this machine, no Docker: infrastructure, our services (the webhook dispatcher
too), a mail sink and a webhook receiver.

`make dev` runs it in the foreground; the end-to-end tests start the very same code on free ports.
Components start in order with a readiness check each; the first one that fails stops the others
and its log tail is shown. Everything is ephemeral: each start begins empty.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from taifa_localstack.devcerts import DevCertificates, make_dev_certificates
from taifa_localstack.process import ManagedProcess, ServiceFailed, ServiceProcess, free_port, run_once
from taifa_localstack.stack import Stack

DEMO_ACCOUNT_NAME = "Taifa demo"
DEMO_PLAN = "pro"
DEMO_DOMAIN = "demo.example.com"
DEV_JWT_SECRET_BYTES = 32


@dataclass
class DevPorts:
    """Where the services listen; `make dev` uses fixed defaults, tests use free ports."""

    api: int = 8080
    smtp: int = 2587
    smtps: int = 2465
    relay_health: int = 9101
    projector_health: int = 9102
    sink: int = 2525
    webhooks_health: int = 9103
    webhook_receiver: int = 9200

    @classmethod
    def free(cls) -> DevPorts:
        return cls(*(free_port() for _ in fields(cls)))


@dataclass
class DevStack:
    """Start with `start()`, stop with `stop()`; `env` holds what `.taifa/dev.env` says."""

    workdir: Path
    ports: DevPorts = field(default_factory=DevPorts)
    progress: Callable[[str], None] = lambda line: print(line, flush=True)
    env: dict[str, str] = field(default_factory=dict)
    _running: list[ManagedProcess] = field(default_factory=list)
    _infra: Stack | None = None

    @property
    def env_file(self) -> Path:
        return self.workdir / "dev.env"

    def start(self) -> dict[str, str]:
        run_dir = self.workdir / "run"
        shutil.rmtree(run_dir, ignore_errors=True)
        self.env_file.unlink(missing_ok=True)
        try:
            self._start_all(run_dir)
        except BaseException:
            self.stop()
            raise
        self._write_env_file()
        return self.env

    def _start_all(self, run_dir: Path) -> None:
        self._infra = Stack(run_dir / "infra")
        self._step("PostgreSQL, Redis, Kafka-protocol broker (Tansu)", self._infra.start)
        import secrets

        jwt_secret = secrets.token_urlsafe(DEV_JWT_SECRET_BYTES)
        certs = make_dev_certificates(run_dir / "tls")
        maildir = run_dir / "maildir"
        self.env = {
            **self._infra.env(),
            "TAIFA_API_HOST": "127.0.0.1",
            "TAIFA_API_PORT": str(self.ports.api),
            # The 201 response shows where to send: the local relay, not production.
            "TAIFA_API_SMTP_HOST": "127.0.0.1",
            "TAIFA_API_SMTP_PORT": str(self.ports.smtp),
            "TAIFA_API_SMTPS_PORT": str(self.ports.smtps),
            # The console's one-time sign-in links (/console/dev/sign-in): development only.
            "TAIFA_API_DEV_SIGN_IN": "true",
            "TAIFA_JWT_SECRET": jwt_secret,  # the contract's name in dev.env
            "TAIFA_API_JWT_SECRET": jwt_secret,
            "TAIFA_PROJECTOR_HEALTH_PORT": str(self.ports.projector_health),
            **self._relay_env(certs),
            **self._webhooks_env(),
        }
        self._step("migrations", self._migrate)
        self._serve(
            "mail sink",
            [
                sys.executable,
                "-m",
                "taifa_localstack.mailsink",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.ports.sink),
                "--maildir",
                str(maildir),
                # STARTTLS with a certificate of the dev CA: the relay's default upstream TLS is `required`.
                "--tls-cert",
                str(certs.cert_file),
                "--tls-key",
                str(certs.key_file),
            ],
            run_dir,
            None,
        )
        self._serve("projector", [_tool("taifa-projector"), "run"], run_dir, self.ports.projector_health)
        self._serve("credential-api", [_tool("taifa-api"), "serve"], run_dir, self.ports.api)
        self._serve("relay", [_tool("taifa-relay"), "run"], run_dir, self.ports.relay_health)
        webhook_log = run_dir / "webhooks.jsonl"
        self._serve(
            "webhook receiver",
            [sys.executable, "-m", "taifa_localstack.webhook_receiver", "--port", str(self.ports.webhook_receiver),
             "--log", str(webhook_log)],
            run_dir,
            self.ports.webhook_receiver,  # answers GET /readyz (any GET) with 200
        )  # fmt: skip
        self._serve("webhook dispatcher", [_tool("taifa-webhooks"), "run"], run_dir, self.ports.webhooks_health)
        self._step("demo account and verified domain", lambda: self._seed())
        self.env.update(
            {
                "TAIFA_API_URL": f"http://127.0.0.1:{self.ports.api}",
                "TAIFA_SMTP_HOST": "127.0.0.1",
                "TAIFA_SMTP_PORT": str(self.ports.smtp),
                "TAIFA_SMTPS_PORT": str(self.ports.smtps),
                "TAIFA_CA_FILE": str(certs.ca_file),
                "TAIFA_MAILDIR": str(maildir),
                "TAIFA_WEBHOOK_RECEIVER_URL": f"http://127.0.0.1:{self.ports.webhook_receiver}/hooks",
                "TAIFA_WEBHOOK_LOG": str(webhook_log),
            }
        )

    def _relay_env(self, certs: DevCertificates) -> dict[str, str]:
        return {
            "TAIFA_RELAY_HOSTNAME": "localhost",
            "TAIFA_RELAY_BIND_HOST": "127.0.0.1",
            "TAIFA_RELAY_SUBMISSION_PORT": str(self.ports.smtp),
            "TAIFA_RELAY_SMTPS_PORT": str(self.ports.smtps),
            "TAIFA_RELAY_HEALTH_PORT": str(self.ports.relay_health),
            "TAIFA_RELAY_TLS_CERT_FILE": str(certs.cert_file),
            "TAIFA_RELAY_TLS_KEY_FILE": str(certs.key_file),
            "TAIFA_RELAY_UPSTREAM_HOST": "127.0.0.1",
            "TAIFA_RELAY_UPSTREAM_PORT": str(self.ports.sink),
            "TAIFA_RELAY_UPSTREAM_TLS": "required",
            "TAIFA_RELAY_UPSTREAM_CA_FILE": str(certs.ca_file),
        }

    def _webhooks_env(self) -> dict[str, str]:
        import base64
        import secrets

        return {
            # Encrypts the webhooks' signing secrets at rest; made at every start, never written anywhere else.
            "TAIFA_WEBHOOK_SECRET_KEYS": "dev:" + base64.b64encode(secrets.token_bytes(32)).decode(),
            # Development only: http URLs and loopback receivers (link-local and metadata stay refused).
            "TAIFA_WEBHOOK_ALLOW_HTTP": "true",
            "TAIFA_WEBHOOKS_HEALTH_HOST": "127.0.0.1",
            "TAIFA_WEBHOOKS_HEALTH_PORT": str(self.ports.webhooks_health),
            "TAIFA_WEBHOOKS_POLL_SECONDS": "0.5",
        }

    def _migrate(self) -> None:
        run_once([_tool("taifa-api"), "migrate"], env=self.env)
        run_once([_tool("taifa-projector"), "migrate"], env=self.env)

    def _serve(self, name: str, command: list[str], run_dir: Path, health_port: int | None) -> None:
        ready_url = f"http://127.0.0.1:{health_port}/readyz" if health_port else None
        service = ServiceProcess(name.replace(" ", "-"), command, run_dir / "logs", env=self.env, ready_url=ready_url)
        if name == "mail sink":
            service.ready = lambda: _smtp_banner(self.ports.sink)  # type: ignore[method-assign]
        self._step(name, lambda: service.start(timeout=60))
        self._running.append(service)

    def _seed(self) -> None:
        account = json.loads(
            run_once(
                [_tool("taifa-admin"), "account", "create", "--name", DEMO_ACCOUNT_NAME, "--plan", DEMO_PLAN],
                env=self.env,
            )
        )
        api_url = f"http://127.0.0.1:{self.ports.api}"
        domain = _post_json(f"{api_url}/v1/domains", {"name": DEMO_DOMAIN}, account["api_key"])
        run_once([_tool("taifa-admin"), "domain", "verify", "--force", domain["id"]], env=self.env)
        sign_in = json.loads(
            run_once(
                [_tool("taifa-admin"), "session", "sign-in-link", "--account", account["account_id"]], env=self.env
            )
        )
        self.env.update(
            {
                "TAIFA_API_KEY": account["api_key"],
                "TAIFA_ACCOUNT_ID": account["account_id"],
                "TAIFA_DOMAIN_ID": domain["id"],
                "TAIFA_DOMAIN": domain["name"],
                "TAIFA_CONSOLE_SIGN_IN_URL": api_url + sign_in["path"],
            }
        )

    def _step(self, what: str, action: Callable[[], object]) -> None:
        began = time.monotonic()
        self.progress(f"  starting {what} ...")
        action()
        self.progress(f"  ready    {what} ({time.monotonic() - began:.1f}s)")

    def _write_env_file(self) -> None:
        """Written last, when all is ready: its presence means the stack is up."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        partial = self.env_file.with_suffix(".tmp")
        partial.write_text("".join(f"{key}={value}\n" for key, value in sorted(self.env.items())))
        partial.chmod(0o600)
        partial.replace(self.env_file)

    def stop(self) -> None:
        self.env_file.unlink(missing_ok=True)
        while self._running:
            self._running.pop().stop()
        if self._infra is not None:
            self._infra.stop()
            self._infra = None


def _tool(name: str) -> str:
    """A console script of this environment (the services are installed into the same venv)."""
    return str(Path(sys.executable).parent / name)


def _post_json(url: str, body: dict[str, object], api_key: str) -> dict[str, str]:
    request = urllib.request.Request(  # noqa: S310 - loopback URL we built
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        result: dict[str, str] = json.loads(response.read())
        return result


def _smtp_banner(port: int) -> bool:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        return sock.recv(64).startswith(b"220")


__all__ = ["DevPorts", "DevStack", "ServiceFailed"]

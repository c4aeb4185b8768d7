"""The whole stack, started once per session with the same code as `make dev`, and helpers to use it as a customer."""

from __future__ import annotations

import json
import mailbox
import smtplib
import ssl
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from taifa_localstack import run_once
from taifa_localstack.devstack import DevPorts, DevStack


@pytest.fixture(scope="session")
def dev_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("devstack"), ports=DevPorts.free())
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def env(dev_stack: DevStack) -> dict[str, str]:
    return dev_stack.env


def admin(env: dict[str, str], *args: str) -> dict[str, str]:
    """Run `taifa-admin` with the dev settings, as an operator would; returns its JSON output."""
    output = run_once([str(Path(sys.executable).parent / "taifa-admin"), *args], env=env)
    result: dict[str, str] = json.loads(output)
    return result


@dataclass
class Tenant:
    account_id: str
    api_key: str
    domain_id: str
    domain: str
    api: httpx.Client

    def create_credential(self) -> dict[str, object]:
        response = self.api.post("/v1/smtp/credentials", json={"domain_id": self.domain_id})
        assert response.status_code == 201, response.text
        body: dict[str, object] = response.json()
        return body


@pytest.fixture
def new_tenant(env: dict[str, str]) -> Iterator[Callable[..., Tenant]]:
    """Factory: a new account (plan of your choice) with a verified domain of its own."""
    clients: list[httpx.Client] = []

    def make(plan: str = "pro", verified: bool = True) -> Tenant:
        account = admin(env, "account", "create", "--name", f"e2e-{uuid.uuid4().hex[:6]}", "--plan", plan)
        api = httpx.Client(base_url=env["TAIFA_API_URL"], headers={"Authorization": f"Bearer {account['api_key']}"},
                           timeout=30)
        clients.append(api)
        name = f"e2e-{uuid.uuid4().hex[:10]}.example.com"
        domain = api.post("/v1/domains", json={"name": name})
        assert domain.status_code == 201, domain.text
        domain_id = domain.json()["id"]
        if verified:
            admin(env, "domain", "verify", "--force", domain_id)
        return Tenant(account["account_id"], account["api_key"], domain_id, name, api)

    yield make
    for client in clients:
        client.close()


def tls_context(env: dict[str, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=env["TAIFA_CA_FILE"])


def smtp_session(env: dict[str, str], *, implicit_tls: bool = False) -> smtplib.SMTP:
    """A connected, TLS-protected client session (STARTTLS on the submission port, or implicit TLS)."""
    host = env["TAIFA_SMTP_HOST"]
    if implicit_tls:
        port = int(env["TAIFA_SMTPS_PORT"])
        client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, context=tls_context(env), timeout=30)
    else:
        client = smtplib.SMTP(host, int(env["TAIFA_SMTP_PORT"]), timeout=30)
        client.starttls(context=tls_context(env))
    client.ehlo()
    return client


def message(sender: str, subject: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: someone@example.net\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4()}@e2e>\r\n\r\nHello from the end-to-end tests.\r\n"
    ).encode()


def delivered(env: dict[str, str], subject: str, timeout: float = 20.0) -> mailbox.MaildirMessage:
    """The message with this subject in the sink's Maildir, waiting up to `timeout` for it to arrive."""
    box = mailbox.Maildir(env["TAIFA_MAILDIR"], create=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        box = mailbox.Maildir(env["TAIFA_MAILDIR"], create=False)
        for item in box:
            if item["Subject"] == subject:
                return item
        time.sleep(0.1)
    raise AssertionError(f"no message with subject {subject!r} in {env['TAIFA_MAILDIR']} within {timeout}s")

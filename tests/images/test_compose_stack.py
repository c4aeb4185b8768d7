"""deploy/compose.yaml brought up for real (`deploy/scripts/compose.sh up`, what `make compose-up` runs) and one
message sent end to end: account -> domain -> credential -> SMTP through the relay container -> the mail sink; the
webhook dispatcher container takes the credential's `smtp_credential.created` and attempts its delivery.

Where nothing can be pulled, the infrastructure images are the stand-ins of deploy/podman/standins, tagged with the
compose file's names. The project gets its own name and free loopback ports, so it never meets a user's stack.
"""

from __future__ import annotations

import json
import secrets
import smtplib
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from taifa_api.adapters.webhook_secrets import generate_key_ring_entry
from taifa_localstack import event_signing_env
from taifa_localstack.process import free_port

from tests.images.podman_support import REPO, env, podman, poll

pytestmark = [pytest.mark.images, pytest.mark.timeout(1500)]

COMPOSE_SCRIPT = REPO / "deploy" / "scripts" / "compose.sh"
UP_TIMEOUT = 900.0  # builds (warm after the image tests) + four bounded stages
PORTS = ("API", "SMTP", "SMTPS", "RELAY_HEALTH", "WEBHOOKS_HEALTH", "MAIL_UI")


@dataclass
class ComposeStack:
    project: str
    ports: dict[str, int]

    def container(self, service: str) -> str:
        found = podman(
            "ps", "-q", "--filter", f"label=com.docker.compose.project={self.project}",
            "--filter", f"label=com.docker.compose.service={service}",
        ).stdout.split()  # fmt: skip
        assert found, f"no running {service} container in project {self.project}"
        return found[0]

    def exec(self, service: str, *command: str) -> str:
        return podman("exec", self.container(service), *command, timeout=120).stdout

    def url(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def logs(self, *services: str) -> str:
        out = []
        for service in services:
            result = podman("logs", "--tail", "30", self.container(service), check=False)
            out.append(f"--- {service} ---\n{result.stdout[-2500:]}{result.stderr[-2500:]}")
        return "\n".join(out)


def compose(stack_env: dict[str, str], action: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(COMPOSE_SCRIPT), action],
        env=stack_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def stack(built_images: str) -> Iterator[ComposeStack]:
    project = f"taifa-e2e-{uuid.uuid4().hex[:6]}"
    ports = {name: free_port() for name in PORTS}
    stack_env = {
        **env(),
        "TAIFA_COMPOSE_PROJECT": project,
        "TAIFA_COMPOSE_TIMEOUT": "180",
        "TAIFA_COMPOSE_BUILD": "0",  # built_images built them from this working tree
        # A key of the id the compose file makes active (TAIFA_EVENT_SIGNING_KEY_ID: taifa-1), never stored.
        "TAIFA_EVENT_SIGNING_KEYS": event_signing_env("taifa-1")["TAIFA_EVENT_SIGNING_KEYS"],
        "TAIFA_WEBHOOK_SECRET_KEYS": generate_key_ring_entry("compose-1"),
        "TAIFA_API_JWT_SECRET": secrets.token_urlsafe(48),
        **{f"TAIFA_COMPOSE_{name}_PORT": str(port) for name, port in ports.items()},
    }
    try:
        up = compose(stack_env, "up", UP_TIMEOUT)
        assert up.returncode == 0, f"compose.sh up failed:\n{up.stdout[-3000:]}\n{up.stderr[-5000:]}"
        yield ComposeStack(project, ports)
    finally:
        down = compose(stack_env, "down", 300)
        assert down.returncode == 0, f"compose.sh down failed:\n{down.stdout[-2000:]}\n{down.stderr[-3000:]}"
        left = podman("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").stdout.split()
        assert left == [], f"containers left behind: {left}"


def test_the_compose_stack_relays_one_message_from_a_new_credential_to_the_mail_sink(stack: ComposeStack) -> None:
    account = json.loads(stack.exec("credential-api", "taifa-admin", "account", "create", "--name", "compose",
                                    "--plan", "pro"))  # fmt: skip
    with httpx.Client(
        base_url=stack.url("API", ""), headers={"Authorization": f"Bearer {account['api_key']}"}, timeout=30
    ) as api:
        # Before the credential: an endpoint receives only events from after its creation. A public address
        # literal (nothing to resolve); whether this machine can reach it or not, the attempt is recorded.
        webhook = api.post("/v1/webhooks", json={"url": "http://93.184.215.14/taifa-compose", "events": ["*"]})
        assert webhook.status_code == 201, webhook.text
        assert webhook.json()["secret"].startswith("whsec_")
        domain_name = f"compose-{uuid.uuid4().hex[:8]}.example.com"
        domain = api.post("/v1/domains", json={"name": domain_name})
        assert domain.status_code == 201, domain.text
        stack.exec("credential-api", "taifa-admin", "domain", "verify", "--force", domain.json()["id"])
        created = api.post("/v1/smtp/credentials", json={"domain_id": domain.json()["id"]})
        assert created.status_code == 201, created.text
        credential = created.json()

    # The relay's certificate is signed by the CA relay-cert made in the shared volume.
    context = ssl.create_default_context(cadata=stack.exec("relay", "cat", "/etc/taifa/tls/ca.crt"))
    context.check_hostname = False  # issued to mail.localhost; the chain is still verified
    subject = f"compose end to end {uuid.uuid4().hex[:8]}"
    sender = f"app@{domain_name}"
    message = (
        f"From: {sender}\r\nTo: someone@example.net\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4()}@compose.test>\r\n\r\nHello through the compose stack.\r\n"
    )

    def send() -> bool:
        # The projector puts the new credential into the relay's Redis shortly after the API answered.
        with smtplib.SMTP("127.0.0.1", stack.ports["SMTP"], local_hostname="compose.test", timeout=30) as smtp:
            smtp.starttls(context=context)
            smtp.login(str(credential["username"]), str(credential["password"]))
            refused = smtp.sendmail(sender, ["someone@example.net"], message.encode())
            return refused == {}

    poll("AUTH and the message accepted by the relay", send, 90, lambda: stack.logs("relay", "projector"))

    def delivered() -> bool:
        listing = httpx.get(stack.url("MAIL_UI", "/api/v1/messages"), timeout=5).json()
        return any(m["Subject"] == subject for m in listing["messages"])

    poll("the message in the mail sink", delivered, 60, lambda: stack.logs("relay", "mailpit"))

    assert httpx.get(stack.url("WEBHOOKS_HEALTH", "/readyz"), timeout=5).status_code == 200

    def attempted() -> bool:
        listing = httpx.get(
            stack.url("API", f"/v1/webhooks/{webhook.json()['id']}/deliveries"),
            headers={"Authorization": f"Bearer {account['api_key']}"},
            timeout=10,
        ).json()
        created_events = [d for d in listing if d["event_type"] == "smtp_credential.created"]
        return any(d["attempt_count"] >= 1 and d["attempts"] for d in created_events)

    poll("a delivery attempt of smtp_credential.created", attempted, 90, lambda: stack.logs("webhooks"))

"""End to end, through the clients customers use: API → event store → Kafka → projector → Redis → relay → upstream."""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import delivered, message, smtp_session

NODE_DIR = Path(__file__).parent / "node"


def _subject(tag: str) -> str:
    return f"e2e {tag} {uuid.uuid4().hex}"


@pytest.mark.parametrize("implicit_tls", [False, True], ids=["starttls-587", "implicit-tls-465"])
def test_smtplib_send_arrives_with_the_relays_received_header(env, new_tenant, implicit_tls) -> None:
    tenant = new_tenant()
    credential = tenant.create_credential()
    subject = _subject("smtplib")
    with smtp_session(env, implicit_tls=implicit_tls) as smtp:
        smtp.login(credential["username"], credential["password"])
        smtp.sendmail(f"app@{tenant.domain}", ["someone@example.net"], message(f"app@{tenant.domain}", subject))
    arrived = delivered(env, subject)
    received = arrived.get_all("Received") or []
    assert received, "the relay adds a Received: trace header"
    assert "Taifa" in received[0] or "localhost" in received[0]


def test_nodemailer_send_arrives(env, new_tenant) -> None:
    tenant = new_tenant()
    credential = tenant.create_credential()
    subject = _subject("nodemailer")
    result = subprocess.run(
        ["node", "send.mjs"], cwd=NODE_DIR, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "SMTP_HOST": env["TAIFA_SMTP_HOST"], "SMTP_PORT": env["TAIFA_SMTP_PORT"],
             "SMTP_SECURE": "false", "SMTP_USER": str(credential["username"]),
             "SMTP_PASS": str(credential["password"]), "SMTP_CA_FILE": env["TAIFA_CA_FILE"],
             "MAIL_FROM": f"node@{tenant.domain}", "MAIL_TO": "someone@example.net", "MAIL_SUBJECT": subject},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["ok"] is True
    assert delivered(env, subject).get_all("Received")


def test_swaks_auth_login_send_arrives(env, new_tenant) -> None:
    tenant = new_tenant()
    credential = tenant.create_credential()
    subject = _subject("swaks")
    result = _swaks(env, credential, tenant.domain, subject)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\n<~  235 " in result.stdout, result.stdout  # the server's reply inside TLS, not a port number
    assert delivered(env, subject).get_all("Received")


def test_deactivation_refuses_the_next_login_and_a_live_session_then_a_new_credential_works(env, new_tenant) -> None:
    tenant = new_tenant()
    credential = tenant.create_credential()
    sender = f"app@{tenant.domain}"
    live = smtp_session(env)
    live.login(credential["username"], credential["password"])

    response = tenant.api.delete(f"/v1/smtp/credentials/{credential['id']}")
    assert response.status_code == 204

    with smtp_session(env) as fresh, pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        fresh.login(credential["username"], credential["password"])
    assert refused.value.smtp_code == 535

    code, _ = live.mail(sender)
    assert code in (530, 535), "a session logged in before the deactivation is refused at its next MAIL"
    live.close()

    listed = tenant.api.get("/v1/smtp/credentials").json()
    assert [c["is_active"] for c in listed if c["id"] == credential["id"]] == [False]

    replacement = tenant.create_credential()
    assert replacement["username"] == credential["username"]
    subject = _subject("after-rotation")
    with smtp_session(env) as smtp:
        smtp.login(replacement["username"], replacement["password"])
        smtp.sendmail(sender, ["someone@example.net"], message(sender, subject))
    assert delivered(env, subject)


def test_deleting_the_domain_refuses_its_credential_at_once_and_frees_the_name(env, new_tenant) -> None:
    from tests.e2e.conftest import admin

    tenant = new_tenant()
    credential = tenant.create_credential()
    live = smtp_session(env)
    live.login(credential["username"], credential["password"])

    assert tenant.api.delete(f"/v1/domains/{tenant.domain_id}").status_code == 204

    with smtp_session(env) as fresh, pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        fresh.login(credential["username"], credential["password"])
    assert refused.value.smtp_code == 535
    code, _ = live.mail(f"app@{tenant.domain}")
    assert code in (530, 535), "a session logged in before the release is refused at its next MAIL"
    live.close()
    assert tenant.api.get(f"/v1/domains/{tenant.domain_id}").status_code == 404
    assert [c["is_active"] for c in tenant.api.get("/v1/smtp/credentials").json()] == [False]

    other = new_tenant(verified=False)
    again = other.api.post("/v1/domains", json={"name": tenant.domain}).json()
    assert admin(env, "domain", "verify", "--force", again["id"])["status"] == "verified"


def test_another_account_sees_404_for_foreign_ids(new_tenant) -> None:
    owner, stranger = new_tenant(), new_tenant()
    credential = owner.create_credential()
    assert stranger.api.get(f"/v1/domains/{owner.domain_id}").status_code == 404
    assert stranger.api.delete(f"/v1/smtp/credentials/{credential['id']}").status_code == 404
    foreign = stranger.api.post("/v1/smtp/credentials", json={"domain_id": owner.domain_id})
    assert foreign.status_code == 404
    assert foreign.json()["error"]["code"] == "not_found"
    assert credential["id"] not in {c["id"] for c in stranger.api.get("/v1/smtp/credentials").json()}


def test_create_on_an_unverified_domain_is_400(new_tenant) -> None:
    tenant = new_tenant(verified=False)
    response = tenant.api.post("/v1/smtp/credentials", json={"domain_id": tenant.domain_id})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "domain_not_verified"


def test_plan_limit_gives_403(env, new_tenant) -> None:
    from tests.e2e.conftest import admin

    tenant = new_tenant(plan="free")  # free: 1 active credential
    tenant.create_credential()
    second = tenant.api.post("/v1/domains", json={"name": f"second-{uuid.uuid4().hex[:8]}.example.com"}).json()
    admin(env, "domain", "verify", "--force", second["id"])
    response = tenant.api.post("/v1/smtp/credentials", json={"domain_id": second["id"]})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "credential_limit_reached"


def _swaks(env, credential, domain: str, subject: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["swaks", "--server", env["TAIFA_SMTP_HOST"], "--port", env["TAIFA_SMTP_PORT"], "--tls", "--tls-verify",
         "--tls-ca-path", env["TAIFA_CA_FILE"], "--auth", "LOGIN", "--auth-user", str(credential["username"]),
         "--auth-password", str(credential["password"]), "--from", f"swaks@{domain}", "--to", "someone@example.net",
         "--header", f"Subject: {subject}", "--timeout", "30"],
        capture_output=True, text=True, timeout=60, check=False,
    )

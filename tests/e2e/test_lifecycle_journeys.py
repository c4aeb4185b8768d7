"""The credential lifecycle of docs/api.md end to end, through smtplib, nodemailer and swaks.

Rotation with a grace period loses no mail, grace 0 cuts a live session at its next command, suspension
is a temporary failure clients retry, an address allowlist and a damaged `tmsmtp_` password are refused
as a wrong password is. Every wait polls with a deadline; no sleep stands in for synchronisation.
"""

from __future__ import annotations

import json
import mailbox
import os
import random
import re
import smtplib
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from taifa_localstack import wait_until

from tests.e2e.conftest import Tenant, admin, delivered, message, smtp_session

NODE_DIR = Path(__file__).parent / "node"
RECIPIENT = "someone@example.net"
SCANNABLE_PASSWORD = re.compile(r"tmsmtp_[0-9A-Za-z]{43}[0-9A-Za-z]{6}")
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# One connection per message, as many application servers do; bounded so that the whole e2e run stays
# well under the relay's 120 new connections a minute from one address.
CONTINUOUS_MESSAGES = 30
ROTATE_AFTER = 8  # messages sent before the rotation is requested
IN_FLIGHT_MAX = 6  # messages the client may send while the rotation request is in flight
SWITCH_AFTER = 5  # messages sent with the old password after the 201 (a deploy picking up the new secret)


def _tag(what: str) -> str:
    return f"e2e-lifecycle {what} {uuid.uuid4().hex}"


def _arrived_with_prefix(maildir: str, prefix: str) -> list[str]:
    return [str(m["Subject"]) for m in mailbox.Maildir(maildir, create=False) if str(m["Subject"]).startswith(prefix)]


def _login_code(env: dict[str, str], username: str, password: str) -> int:
    """The reply code to AUTH on a fresh connection (235 on success)."""
    with smtp_session(env) as smtp:
        try:
            code, _ = smtp.login(username, password)
        except smtplib.SMTPAuthenticationError as refused:
            return refused.smtp_code
        return code


def _send_one(env: dict[str, str], username: str, password: str, sender: str, subject: str) -> list[int]:
    """One message on its own connection; the reply codes of AUTH, MAIL, RCPT and DATA (stops at the first refusal)."""
    codes: list[int] = []
    with smtp_session(env) as smtp:
        try:
            codes.append(smtp.login(username, password)[0])
        except smtplib.SMTPAuthenticationError as refused:
            return [refused.smtp_code]
        for step in (
            lambda: smtp.mail(sender),
            lambda: smtp.rcpt(RECIPIENT),
            lambda: smtp.data(message(sender, subject)),
        ):
            code = step()[0]
            codes.append(code)
            if code >= 400:
                break
    return codes


def _suspend(tenant: Tenant, credential_id: str, reason: str | None = None) -> dict[str, object]:
    response = tenant.api.post(
        f"/v1/smtp/credentials/{credential_id}/suspend", json={"reason": reason} if reason else None
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def _rotate(tenant: Tenant, credential_id: str, grace_period_seconds: int) -> dict[str, object]:
    response = tenant.api.post(
        f"/v1/smtp/credentials/{credential_id}/rotate", json={"grace_period_seconds": grace_period_seconds}
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


@dataclass
class ContinuousSender:
    """A client sending one message per connection in a loop while the credential is rotated.

    It keeps sending with the old password while the rotation is in flight (at most IN_FLIGHT_MAX messages, so
    that a slow rotation cannot use up the loop), goes on with it for SWITCH_AFTER messages after the 201, as
    a deploy picking the new secret up would, then uses the new one.
    """

    env: dict[str, str]
    username: str
    password: str
    sender: str
    prefix: str
    # (subject, which password, reply codes or the error that ended the connection)
    results: list[tuple[str, str, list[int] | str]] = field(default_factory=list)
    new_password: str | None = None
    rotated: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def rotation_done(self, new_password: str) -> None:
        with self.lock:
            self.new_password = new_password
        self.rotated.set()

    def run(self) -> None:
        after_rotation = 0
        for index in range(CONTINUOUS_MESSAGES):
            if index >= ROTATE_AFTER + IN_FLIGHT_MAX and not self.rotated.wait(timeout=60):
                self.results.append((f"{self.prefix} {index:03d}", "old", "no rotation within 60 s"))
                return
            with self.lock:
                new_password = self.new_password
            use_new = new_password is not None and after_rotation >= SWITCH_AFTER
            subject = f"{self.prefix} {index:03d}"
            try:
                password = new_password if use_new and new_password else self.password
                outcome: list[int] | str = _send_one(self.env, self.username, password, self.sender, subject)
            except (OSError, smtplib.SMTPException) as exc:  # a dropped connection is a lost message too
                outcome = repr(exc)
            with self.lock:
                self.results.append((subject, "new" if use_new else "old", outcome))
            if new_password is not None:
                after_rotation += 1


def test_a_client_sending_through_a_rotation_with_grace_loses_no_message(env, new_tenant) -> None:
    tenant = new_tenant()
    credential = tenant.create_credential()
    prefix = _tag("rotation")
    client = ContinuousSender(
        env, str(credential["username"]), str(credential["password"]), f"app@{tenant.domain}", prefix
    )
    worker = threading.Thread(target=client.run, name="continuous-sender", daemon=True)
    worker.start()

    wait_until(lambda: len(client.results) >= ROTATE_AFTER, 120, "the client sending its first messages")
    rotated = _rotate(tenant, str(credential["id"]), grace_period_seconds=600)
    client.rotation_done(str(rotated["password"]))
    worker.join(timeout=240)
    assert not worker.is_alive(), "the sending loop is bounded"

    refused = [(subject, which, codes) for subject, which, codes in client.results if codes != [235, 250, 250, 250]]
    assert not refused, f"every send is accepted before, during and after the rotation: {refused}"
    assert len(client.results) == CONTINUOUS_MESSAGES
    used = [which for _, which, _ in client.results]
    assert used.count("new") >= CONTINUOUS_MESSAGES - ROTATE_AFTER - IN_FLIGHT_MAX - SWITCH_AFTER, used

    expected = sorted(subject for subject, _, _ in client.results)
    wait_until(
        lambda: len(_arrived_with_prefix(env["TAIFA_MAILDIR"], prefix)) >= CONTINUOUS_MESSAGES,
        60,
        "every accepted message in the Maildir",
    )
    assert sorted(_arrived_with_prefix(env["TAIFA_MAILDIR"], prefix)) == expected, "each message arrives once"

    # The username never changes; the previous secret is listed with the end of its grace.
    assert rotated["username"] == credential["username"]
    previous = rotated["previous_secret"]
    assert isinstance(previous, dict) and previous["expires_at"]
    shown = tenant.api.get(f"/v1/smtp/credentials/{credential['id']}")
    assert shown.status_code == 200, shown.text
    assert "password" not in shown.json()
    assert {s["id"] for s in shown.json()["secrets"]} >= {previous["id"]}

    # Ending the grace at once: the old password is refused from the 204 on, the new one keeps working.
    ended = tenant.api.delete(f"/v1/smtp/credentials/{credential['id']}/secrets/{previous['id']}")
    assert ended.status_code == 204, ended.text
    assert _login_code(env, str(credential["username"]), str(credential["password"])) == 535
    assert _login_code(env, str(credential["username"]), str(rotated["password"])) == 235


def test_rotation_without_grace_refuses_a_live_session_at_its_next_mail(env, new_tenant) -> None:
    tenant = new_tenant()
    credential = tenant.create_credential()
    username, old_password = str(credential["username"]), str(credential["password"])
    sender = f"app@{tenant.domain}"
    live = smtp_session(env)
    try:
        assert live.login(username, old_password)[0] == 235

        rotated = _rotate(tenant, str(credential["id"]), grace_period_seconds=0)

        code, reply = live.mail(sender)
        assert code == 535, f"a session logged in with the retired secret is refused at MAIL: {code} {reply!r}"
    finally:
        live.close()
    assert _login_code(env, username, old_password) == 535
    subject = _tag("after-rotation")
    assert _send_one(env, username, str(rotated["password"]), sender, subject) == [235, 250, 250, 250]
    assert delivered(env, subject)


def test_suspension_is_a_temporary_failure_at_mail_and_resume_sends(env, new_tenant) -> None:
    tenant = new_tenant()
    credential = tenant.create_credential()
    username, password = str(credential["username"]), str(credential["password"])
    sender = f"app@{tenant.domain}"
    live = smtp_session(env)
    try:
        assert live.login(username, password)[0] == 235

        suspended = _suspend(tenant, str(credential["id"]), reason="e2e: unusual volume")
        assert (suspended["status"], suspended["is_active"]) == ("suspended", True)
        assert suspended["suspension_reason"] == "e2e: unusual volume"

        code, reply = live.mail(sender)
        assert (code, reply[:5]) == (451, b"4.7.1"), "a live session gets the temporary failure from the 200 on"
        fresh_codes = _send_one(env, username, password, sender, _tag("while-suspended"))
        assert fresh_codes == [235, 451], "AUTH still succeeds; MAIL is refused temporarily"

        swaks = _swaks(env, username, password, sender, _tag("swaks-suspended"))
        assert swaks.returncode == 23, swaks.stdout + swaks.stderr  # swaks: error after MAIL FROM
        assert "451 4.7.1" in swaks.stdout
        node = _nodemailer(env, username, password, sender, _tag("node-suspended"))
        assert node["ok"] is False and node["code"] == 451, node

        resumed = tenant.api.post(f"/v1/smtp/credentials/{credential['id']}/resume")
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["status"] == "active"

        # The client that got 451 retries on the same connection and is served.
        subject = _tag("resumed-live")
        assert live.rset()[0] == 250
        assert live.mail(sender)[0] == 250
        assert live.rcpt(RECIPIENT)[0] == 250
        assert live.data(message(sender, subject))[0] == 250
    finally:
        live.close()
    assert delivered(env, subject)
    node_subject = _tag("node-resumed")
    node = _nodemailer(env, username, password, sender, node_subject)
    assert node["ok"] is True, node
    assert delivered(env, node_subject)


def test_an_address_outside_allowed_cidrs_gets_535_and_clearing_the_list_restores_login(env, new_tenant) -> None:
    tenant = new_tenant()
    credential = tenant.create_credential()
    username, password = str(credential["username"]), str(credential["password"])
    path = f"/v1/smtp/credentials/{credential['id']}"

    elsewhere = tenant.api.patch(path, json={"allowed_cidrs": ["203.0.113.0/24", "2001:db8::/48"]})
    assert elsewhere.status_code == 200, elsewhere.text
    assert elsewhere.json()["allowed_cidrs"] == ["203.0.113.0/24", "2001:db8::/48"]
    assert _login_code(env, username, password) == 535, "the e2e client connects from 127.0.0.1"

    including = tenant.api.patch(path, json={"allowed_cidrs": ["203.0.113.0/24", "127.0.0.0/8"]})
    assert including.status_code == 200, including.text
    assert _login_code(env, username, password) == 235

    cleared = tenant.api.patch(path, json={"allowed_cidrs": []})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["allowed_cidrs"] == []
    subject = _tag("cidrs-cleared")
    assert _send_one(env, username, password, f"app@{tenant.domain}", subject) == [235, 250, 250, 250]
    assert delivered(env, subject)


def test_a_scannable_password_with_a_wrong_checksum_gets_535(env, new_tenant) -> None:
    tenant = new_tenant()
    credential = tenant.create_credential()
    username, password = str(credential["username"]), str(credential["password"])
    assert SCANNABLE_PASSWORD.fullmatch(password), "new passwords have the published scannable form"

    last = password[-1]
    damaged = password[:-1] + random.choice([c for c in BASE62 if c != last])
    assert _login_code(env, username, damaged) == 535
    assert _login_code(env, username, password) == 235


def _swaks(
    env: dict[str, str], username: str, password: str, sender: str, subject: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "swaks",
            "--server",
            env["TAIFA_SMTP_HOST"],
            "--port",
            env["TAIFA_SMTP_PORT"],
            "--tls",
            "--tls-verify",
            "--tls-ca-path",
            env["TAIFA_CA_FILE"],
            "--auth",
            "PLAIN",
            "--auth-user",
            username,
            "--auth-password",
            password,
            "--from",
            sender,
            "--to",
            RECIPIENT,
            "--header",
            f"Subject: {subject}",
            "--timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _nodemailer(env: dict[str, str], username: str, password: str, sender: str, subject: str) -> dict[str, object]:
    result = subprocess.run(
        ["node", "send.mjs"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            **os.environ,
            "SMTP_HOST": env["TAIFA_SMTP_HOST"],
            "SMTP_PORT": env["TAIFA_SMTP_PORT"],
            "SMTP_SECURE": "false",
            "SMTP_USER": username,
            "SMTP_PASS": password,
            "SMTP_CA_FILE": env["TAIFA_CA_FILE"],
            "MAIL_FROM": sender,
            "MAIL_TO": RECIPIENT,
            "MAIL_SUBJECT": subject,
        },
    )
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr
    outcome: dict[str, object] = json.loads(lines[-1])
    return outcome


def test_an_operator_suspends_resumes_and_rotates_a_credential_with_taifa_admin(env, new_tenant) -> None:
    tenant = new_tenant()
    credential = tenant.create_credential()
    credential_id, username = str(credential["id"]), str(credential["username"])
    sender = f"app@{tenant.domain}"
    live = smtp_session(env)
    try:
        assert live.login(username, str(credential["password"]))[0] == 235

        def mail_reply() -> int:
            code = live.mail(sender)[0]
            live.rset()
            return code

        # The CLI does not wait for the relays: poll one live session's MAIL, which re-reads the credential.
        suspended = admin(env, "credential", "suspend", credential_id, "--reason", "abuse report 4711")
        assert (suspended["status"], suspended["suspension_reason"]) == ("suspended", "abuse report 4711")
        wait_until(lambda: mail_reply() == 451, 15, "MAIL refused with 451 after the operator's suspension")
        shown = tenant.api.get(f"/v1/smtp/credentials/{credential_id}").json()
        assert (shown["status"], shown["suspension_reason"]) == ("suspended", "abuse report 4711")

        assert admin(env, "credential", "resume", credential_id)["status"] == "active"
        wait_until(lambda: mail_reply() == 250, 15, "MAIL accepted again after the operator's resume")

        rotated = admin(env, "credential", "rotate", credential_id, "--grace-period-seconds", "0")
        assert SCANNABLE_PASSWORD.fullmatch(str(rotated["password"]))
        wait_until(lambda: mail_reply() == 535, 15, "the session of the retired password refused at MAIL")
    finally:
        live.close()
    subject = _tag("operator-rotated")
    assert _send_one(env, username, str(rotated["password"]), sender, subject) == [235, 250, 250, 250]
    assert delivered(env, subject)

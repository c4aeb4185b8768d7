"""Usage and sending limits of docs/api.md ("Usage", "Limits and quotas") end to end, on the `make dev` stack.

Messages sent through the relay show up in the credential's usage and `last_used_*` within 60 s (the relay counts
in Redis, the projector's flusher publishes the windows on the usage topic, the projector applies them); the
per-minute limit refuses at MAIL with 451 4.7.1, the per-day limit and the free plan's daily quota refuse at RCPT
with 452 4.7.1, and those refusals show up in the usage by reason. Every wait polls with a deadline.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from taifa_localstack import wait_until

from tests.e2e.conftest import Tenant, message, smtp_session

FRESHNESS_SECONDS = 60  # CONTRACT §7, docs/api.md: counts and last_used_* are complete within 60 s of the traffic
FREE_DAILY_QUOTA = 200
MAX_RECIPIENTS = 100  # per message (452 4.5.3 past it)
POLL_SECONDS = 1.0


def _credential(tenant: Tenant, **limits: int) -> tuple[str, str, str]:
    created = tenant.create_credential()
    credential_id, username, password = str(created["id"]), str(created["username"]), str(created["password"])
    if limits:
        response = tenant.api.patch(f"/v1/smtp/credentials/{credential_id}", json={"limits": limits})
        assert response.status_code == 200, response.text
    return credential_id, username, password


def _totals(tenant: Tenant, credential_id: str) -> dict[str, Any]:
    response = tenant.api.get(f"/v1/smtp/credentials/{credential_id}/usage")
    assert response.status_code == 200, response.text
    series = response.json()["series"]
    refused: dict[str, int] = {}
    for bucket in series:
        for reason, n in bucket["refused"].items():
            refused[reason] = refused.get(reason, 0) + n
    return {
        "messages": sum(b["messages"] for b in series),
        "recipients": sum(b["recipients"] for b in series),
        "auth_successes": sum(b["auth_successes"] for b in series),
        "refused": refused,
    }


def _early_in_a_minute() -> bool:
    """A per-minute test needs its messages in one minute: start it in the first 40 seconds of one."""
    return time.gmtime().tm_sec < 40


def test_three_messages_show_up_in_usage_and_last_used_within_60_seconds(env, new_tenant) -> None:
    tenant = new_tenant()
    credential_id, username, password = _credential(tenant)
    sender = f"app@{tenant.domain}"
    with smtp_session(env) as smtp:
        smtp.login(username, password)
        for n in range(3):
            smtp.sendmail(sender, ["someone@example.net"], message(sender, f"e2e-usage {n} {uuid.uuid4().hex}"))
    sent_at = time.monotonic()

    wait_until(
        lambda: _totals(tenant, credential_id)["messages"] == 3,
        FRESHNESS_SECONDS,
        "the three messages in the credential's usage",
        interval=POLL_SECONDS,
        on_fail=lambda what: AssertionError(f"{what}; usage: {_totals(tenant, credential_id)}"),
    )
    wait_until(
        lambda: tenant.api.get(f"/v1/smtp/credentials/{credential_id}").json()["last_used_at"] is not None,
        max(1.0, FRESHNESS_SECONDS - (time.monotonic() - sent_at)),
        "last_used_at on the credential",
        interval=POLL_SECONDS,
    )
    body = tenant.api.get(f"/v1/smtp/credentials/{credential_id}").json()
    assert body["last_used_ip"] in ("127.0.0.1", "::1")
    assert body["secrets"][0]["last_used_at"] is not None
    totals = _totals(tenant, credential_id)
    assert (totals["messages"], totals["recipients"], totals["auth_successes"]) == (3, 3, 1)
    account = tenant.api.get("/v1/usage").json()
    assert [item["credential_id"] for item in account["by_credential"]] == [credential_id]
    assert sum(b["messages"] for b in account["series"]) == 3


def test_the_per_minute_limit_refuses_mail_with_451_4_7_1(env, new_tenant) -> None:
    tenant = new_tenant()
    credential_id, username, password = _credential(tenant, messages_per_minute=2)
    sender = f"app@{tenant.domain}"
    wait_until(_early_in_a_minute, 61, "the first 40 seconds of a minute")
    with smtp_session(env) as smtp:
        smtp.login(username, password)
        for n in range(2):
            smtp.sendmail(sender, ["someone@example.net"], message(sender, f"e2e-minute {n} {uuid.uuid4().hex}"))
        code, reply = smtp.mail(sender)
    assert code == 451, reply
    assert reply.startswith(b"4.7.1"), reply
    wait_until(
        lambda: _totals(tenant, credential_id)["refused"].get("limits", 0) >= 1,
        FRESHNESS_SECONDS,
        "the refusal in the usage under `limits`",
        interval=POLL_SECONDS,
        on_fail=lambda what: AssertionError(f"{what}; usage: {_totals(tenant, credential_id)}"),
    )


def test_the_per_day_limit_refuses_rcpt_with_452_4_7_1_each_recipient_counting_one(env, new_tenant) -> None:
    tenant = new_tenant()
    _, username, password = _credential(tenant, messages_per_day=3)
    sender = f"app@{tenant.domain}"
    with smtp_session(env) as smtp:
        smtp.login(username, password)
        assert smtp.mail(sender)[0] == 250
        replies = [smtp.rcpt(f"r{n}@example.net") for n in range(4)]
    assert [code for code, _ in replies] == [250, 250, 250, 452], replies
    assert replies[3][1].startswith(b"4.7.1"), replies[3]


def test_the_free_plans_daily_quota_refuses_rcpt_with_452_4_7_1(env, new_tenant) -> None:
    tenant = new_tenant(plan="free")
    credential_id, username, password = _credential(tenant)
    sender = f"app@{tenant.domain}"
    with smtp_session(env) as smtp:
        smtp.login(username, password)
        for batch in range(FREE_DAILY_QUOTA // MAX_RECIPIENTS):
            recipients = [f"q{batch}-{n}@example.net" for n in range(MAX_RECIPIENTS)]
            refused = smtp.sendmail(sender, recipients, message(sender, f"e2e-quota {batch} {uuid.uuid4().hex}"))
            assert refused == {}, refused
        assert smtp.mail(sender)[0] == 250
        code, reply = smtp.rcpt("one-too-many@example.net")
    assert code == 452, reply
    assert reply.startswith(b"4.7.1"), reply
    wait_until(
        lambda: _totals(tenant, credential_id)["refused"].get("quota", 0) >= 1,
        FRESHNESS_SECONDS,
        "the refusal in the usage under `quota`",
        interval=POLL_SECONDS,
        on_fail=lambda what: AssertionError(f"{what}; usage: {_totals(tenant, credential_id)}"),
    )
    assert _totals(tenant, credential_id)["recipients"] == FREE_DAILY_QUOTA

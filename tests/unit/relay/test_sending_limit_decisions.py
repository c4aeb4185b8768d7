"""Sending limits and plan quotas: the decisions of MAIL and RCPT over a fake of the shared counters (the rules of
windows, days and quotas are taifa_events.usage's, tested with it)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from taifa_events.events import CredentialLimits
from taifa_relay.application.sessions import SessionState
from taifa_relay.application.submission import Accepted, Refused
from taifa_relay.domain import replies

from tests.unit.relay.relay_fakes import World, entry, new_state, world

T = TypeVar("T")
POLICY = ("refused:policy",)  # a policy refusal is counted in the credential's usage
NOW = 1_790_000_000.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def logged_in(w: World, limits: CredentialLimits | None = None, plan: str | None = None) -> SessionState:
    cred = entry()
    update: dict[str, Any] = {"limits": limits or CredentialLimits()}
    if plan is not None:
        update["plan"] = plan
    w.cache.entries["user1"] = cred.model_copy(update=update)
    state = new_state()
    assert run(w.submission.authenticate(state, b"user1", b"right")) == Accepted(replies.AUTH_SUCCESS, ("success",))
    return state


# --- decisions -----------------------------------------------------------------------------------
def test_the_per_minute_limit_refuses_mail_with_451_4_7_1() -> None:
    w = world(clock=lambda: NOW)
    state = logged_in(w, CredentialLimits(messages_per_minute=2))
    for _ in range(2):
        assert run(w.submission.mail_from(state, "app@own.example")) == Accepted(replies.SENDER_OK)
    refused = run(w.submission.mail_from(state, "app@own.example"))
    assert isinstance(refused, Refused) and refused.reply.startswith("451 4.7.1")


def test_a_refused_sender_takes_nothing_from_the_minute() -> None:
    w = world(clock=lambda: NOW)
    state = logged_in(w, CredentialLimits(messages_per_minute=1))
    assert run(w.submission.mail_from(state, "app@other.example")) == Refused(replies.SENDER_NOT_ALLOWED, POLICY)
    assert run(w.submission.mail_from(state, "app@own.example")) == Accepted(replies.SENDER_OK)


def test_no_per_minute_limit_takes_no_counter() -> None:
    w = world(clock=lambda: NOW)
    state = logged_in(w)
    w.sending.down = True  # would refuse if a counter were read
    assert run(w.submission.mail_from(state, "app@own.example")) == Accepted(replies.SENDER_OK)


def test_the_per_day_limit_refuses_rcpt_with_452_4_7_1_each_recipient_counting_one() -> None:
    w = world(clock=lambda: NOW)
    state = logged_in(w, CredentialLimits(messages_per_day=2))
    assert run(w.submission.rcpt_to(state, 0, "a@dest.example")) == Accepted(replies.RECIPIENT_OK)
    assert run(w.submission.rcpt_to(state, 1, "b@dest.example")) == Accepted(replies.RECIPIENT_OK)
    assert run(w.submission.rcpt_to(state, 2, "c@dest.example")) == Refused(
        replies.DAILY_LIMIT_REACHED, ("refused:limits",)
    )


def test_the_plan_quota_refuses_rcpt_with_452_4_7_1_and_an_entry_without_plan_is_free() -> None:
    w = world(clock=lambda: NOW, plan_quotas={"free": 1, "starter": 5, "pro": 5, "enterprise": 5})
    state = logged_in(w)
    assert state.plan == "free"
    assert run(w.submission.rcpt_to(state, 0, "a@dest.example")) == Accepted(replies.RECIPIENT_OK)
    refused = run(w.submission.rcpt_to(state, 1, "b@dest.example"))
    assert refused == Refused(replies.QUOTA_REACHED, ("refused:quota",))
    assert refused.reply.startswith("452 4.7.1")


def test_the_plan_of_the_entry_chooses_the_quota() -> None:
    w = world(clock=lambda: NOW, plan_quotas={"free": 1, "starter": 2, "pro": 5, "enterprise": 5})
    state = logged_in(w, plan="starter")
    assert [run(w.submission.rcpt_to(state, i, f"r{i}@dest.example")).reply[:3] for i in range(3)] == [
        "250",
        "250",
        "452",
    ]


def test_counters_that_cannot_be_read_are_a_temporary_refusal_never_unlimited() -> None:
    w = world(clock=lambda: NOW)
    state = logged_in(w, CredentialLimits(messages_per_minute=5))
    w.sending.down = True
    mail = run(w.submission.mail_from(state, "app@own.example"))
    rcpt = run(w.submission.rcpt_to(state, 0, "a@dest.example"))
    assert isinstance(mail, Refused) and mail.reply.startswith("451 4.3.0")
    assert isinstance(rcpt, Refused) and rcpt.reply.startswith("451 4.3.0")


# --- usage recorded (no I/O: the adapter sends it with the next Redis round trip) ----------------
def test_usage_counts_auth_results_by_reason_refusals_and_deliveries_on_the_credential() -> None:
    w = world(clock=lambda: NOW, plan_quotas={"free": 1, "starter": 1, "pro": 1, "enterprise": 1})
    state = logged_in(w)
    cred = w.cache.entries["user1"]
    assert run(w.submission.authenticate(new_state(), b"user1", b"wrong")).reply.startswith("535")
    w.cache.entries["user1"] = cred.model_copy(update={"allowed_cidrs": ("198.51.100.0/24",)})
    assert run(w.submission.authenticate(new_state(), b"user1", b"right")).reply.startswith("535")
    w.cache.entries["user1"] = cred.model_copy(update={"expires_at": int(NOW) - 1})
    assert run(w.submission.authenticate(new_state(), b"user1", b"right")).reply.startswith("535")
    w.cache.entries["user1"] = cred
    assert run(w.submission.authenticate(new_state(), b"nobody", b"right")).reply.startswith("535")
    assert w.usage.names("auth_failed") == ["auth_secret", "auth_cidr", "auth_expired"]  # nobody: nowhere
    assert run(w.submission.mail_from(state, "app@other.example")).reply.startswith("553")
    assert run(w.submission.rcpt_to(state, 0, "a@dest.example")).reply.startswith("250")
    assert run(w.submission.rcpt_to(state, 1, "b@dest.example")).reply.startswith("452")
    assert w.usage.names("refused") == ["policy", "quota"]
    decision = run(
        w.submission.deliver(
            state,
            helo="client.test",
            tls_version="TLSv1.3",
            sender="app@own.example",
            recipients=["a@dest.example"],
            message=b"From: app@own.example\r\nSubject: x\r\n\r\nbody\r\n",
        )
    )
    assert decision.reply.startswith("250")
    ((_, args),) = [call for call in w.usage.calls if call[0] == "delivered"]
    assert args[:2] == (str(cred.credential_id), str(cred.account_id)) and args[3:6] == (
        "192.0.2.7",
        1,
        len(b"From: app@own.example\r\nSubject: x\r\n\r\nbody\r\n"),
    )
    assert len(w.usage.names("auth_succeeded")) == 1

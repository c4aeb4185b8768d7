"""The relay's submission decisions on fakes of its own ports (no socket, no Redis): AUTH success, failure,
throttling and an unavailable cache; the MAIL sender policy; revocation in a session; the end-of-DATA re-check."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from taifa_events.auth_cache import revocation_message
from taifa_relay.application.ports import UpstreamReply
from taifa_relay.application.sessions import SessionState
from taifa_relay.application.submission import Accepted, Close, LoggedOut, Refused
from taifa_relay.domain import replies

from tests.unit.relay.relay_fakes import World, entry, new_state, world

T = TypeVar("T")
POLICY = ("refused:policy",)  # a policy refusal is counted in the credential's usage
MESSAGE = b"From: app@own.example\r\nTo: a@dest.example\r\nSubject: hi\r\n\r\nHi.\r\n"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def logged_in(w: World, username: str = "user1") -> SessionState:
    state = new_state()
    decision = run(w.submission.authenticate(state, username.encode(), b"right"))
    assert isinstance(decision, Accepted)
    return state


def deliver(w: World, state: SessionState, message: bytes = MESSAGE) -> Any:
    return run(
        w.submission.deliver(
            state,
            helo="client.test",
            tls_version="TLSv1.3",
            sender="app@own.example",
            recipients=["a@x.example"],
            message=message,
        )
    )


# --- AUTH ------------------------------------------------------------------------------------------
def test_auth_with_the_right_secret_logs_the_session_in_with_the_entrys_credential_and_domain() -> None:
    cred = entry("Own.Example")
    w = world({"user1": cred})
    state = new_state()
    decision = run(w.submission.authenticate(state, b" USER1 ", b"right"))
    assert decision == Accepted(replies.AUTH_SUCCESS, ("success",))
    assert (state.username, state.credential_id, state.domain) == ("user1", str(cred.credential_id), "own.example")
    assert state in w.sessions._by_username["user1"]


def test_auth_with_a_wrong_secret_an_unknown_user_or_an_inactive_credential_is_535_and_counted() -> None:
    w = world({"user1": entry(), "gone": entry(active=False)})
    for username, password in ((b"user1", b"wrong"), (b"nobody", b"right"), (b"gone", b"right")):
        state = new_state()
        decision = run(w.submission.authenticate(state, username, password))
        assert decision == Refused(replies.AUTH_INVALID, ("failure",))
        assert state.username is None
    assert w.cache.for_address["192.0.2.7"] == 3


def test_the_third_failure_on_one_connection_closes_it_with_454() -> None:
    w = world({"user1": entry()}, per_connection=3)
    state = new_state()
    decisions = [run(w.submission.authenticate(state, b"user1", b"wrong")) for _ in range(3)]
    assert [type(d) for d in decisions] == [Refused, Refused, Close]
    assert decisions[-1].reply == replies.AUTH_TOO_MANY_FAILURES


def test_a_username_at_its_failure_limit_from_an_address_is_throttled_even_with_the_right_secret() -> None:
    w = world({"user1": entry(), "user2": entry()}, per_connection=100, per_address_username=2)
    for _ in range(2):
        run(w.submission.authenticate(new_state(), b"user1", b"wrong"))
    lookups = w.cache.lookups
    decision = run(w.submission.authenticate(new_state(), b"user1", b"right"))
    assert decision == Close(replies.AUTH_TOO_MANY_FAILURES, ("throttled",))
    assert w.cache.lookups == lookups  # remembered: an attack costs no cache read
    assert isinstance(run(w.submission.authenticate(new_state(), b"user2", b"right")), Accepted)
    assert isinstance(run(w.submission.authenticate(new_state("192.0.2.8"), b"user1", b"right")), Accepted)


def test_logins_refused_by_this_relays_throttle_marks_count_as_refused_throttled_for_the_credential() -> None:
    w = world({"user1": entry()}, per_connection=100, per_address_username=2)
    for _ in range(2):
        run(w.submission.authenticate(new_state(), b"user1", b"wrong"))
    for _ in range(3):  # answered from the mark, without a lookup
        run(w.submission.authenticate(new_state(), b"user1", b"right"))
    run(w.submission.authenticate(new_state(), b"nobody", b"right"))  # not throttled: an unknown name counts nowhere
    assert w.usage.names("auth_failed") == ["auth_secret", "auth_secret"]
    assert w.usage.names("refused") == ["throttled"] * 3


def test_a_username_throttled_again_once_it_is_unknown_no_longer_counts_for_its_old_credential() -> None:
    w = world({"user1": entry()}, per_connection=100, per_address_username=2)
    for _ in range(2):
        run(w.submission.authenticate(new_state(), b"user1", b"wrong"))
    del w.cache.entries["user1"]  # the credential is gone
    w.cache.throttled.clear()  # the mark's window ended; the shared counters are still at the limit
    run(w.submission.authenticate(new_state(), b"user1", b"any"))  # throttled after a lookup that finds nobody
    run(w.submission.authenticate(new_state(), b"user1", b"any"))  # from the mark
    assert w.usage.names("refused") == []


def test_counts_read_with_the_lookup_at_their_limit_throttle_an_address_across_usernames() -> None:
    w = world({"user1": entry()}, per_address=5)
    w.cache.for_address["192.0.2.7"] = 5  # counted by another relay instance
    decision = run(w.submission.authenticate(new_state(), b"user1", b"right"))
    assert decision == Close(replies.AUTH_TOO_MANY_FAILURES, ("throttled",))
    assert w.cache.is_throttled("192.0.2.7", "anyone")


def test_auth_with_the_cache_unreachable_or_untrusted_is_a_temporary_454_and_never_a_login() -> None:
    w = world({"user1": entry()})
    w.cache.down = True
    state = new_state()
    assert run(w.submission.authenticate(state, b"user1", b"right")) == Refused(
        replies.AUTH_TEMPORARY_FAILURE, ("unavailable",)
    )
    w.cache.down, w.cache.stale = False, True
    assert run(w.submission.authenticate(state, b"user1", b"right")) == Refused(
        replies.AUTH_TEMPORARY_FAILURE, ("cache-stale",)
    )
    assert state.username is None


def test_a_failure_that_cannot_be_counted_gets_454_not_535() -> None:
    w = world({"user1": entry()})
    w.cache.writes_refused = True
    decision = run(w.submission.authenticate(new_state(), b"user1", b"wrong"))
    assert decision == Refused(replies.AUTH_TEMPORARY_FAILURE, ("failure", "write-refused"))


# --- MAIL ------------------------------------------------------------------------------------------
def test_mail_from_outside_the_credentials_domain_is_553_and_inside_it_250() -> None:
    w = world({"user1": entry()})
    state = logged_in(w)
    assert run(w.submission.mail_from(state, "app@own.example")) == Accepted(replies.SENDER_OK)
    assert run(w.submission.mail_from(state, "app@sub.own.example")) == Accepted(replies.SENDER_OK)
    for address in ("app@other.example", "app@own.example.evil.net", "app%evil.net@own.example"):
        assert run(w.submission.mail_from(state, address)) == Refused(replies.SENDER_NOT_ALLOWED, POLICY)


def test_mail_from_in_a_subdomain_another_account_verified_is_553() -> None:
    w = world({"user1": entry()})
    state = logged_in(w)
    w.owners.by_name["mail.own.example"] = "22222222-2222-4222-8222-222222222222"
    assert run(w.submission.mail_from(state, "app@mail.own.example")) == Refused(replies.SENDER_NOT_ALLOWED, POLICY)


def test_the_null_sender_is_refused_for_submission() -> None:
    w = world({"user1": entry()})
    state = logged_in(w)
    assert run(w.submission.before_mail(state, "FROM:<>")) == Refused(replies.NULL_SENDER_NOT_ALLOWED, POLICY)
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) is None
    assert w.usage.names("refused") == ["policy"]  # counted in usage like a sender outside the domain


def test_too_many_recipients_is_452_and_a_malformed_one_553() -> None:
    w = world({"user1": entry()})
    state = logged_in(w)
    assert run(w.submission.rcpt_to(state, 0, "a@dest.example")) == Accepted(replies.RECIPIENT_OK)
    assert run(w.submission.rcpt_to(state, 3, "a@dest.example")) == Refused(replies.TOO_MANY_RECIPIENTS, POLICY)
    assert run(w.submission.rcpt_to(state, 0, "not-an-address")) == Refused(replies.RECIPIENT_MALFORMED)
    assert w.usage.names("refused") == ["policy"]  # the recipient cap counts in usage (docs/api.md), once


@pytest.mark.parametrize("reply", [replies.MESSAGE_TOO_BIG, replies.BARE_NEWLINE, replies.LINE_TOO_LONG])
def test_a_message_refused_while_read_counts_as_a_policy_refusal(reply: str) -> None:
    w = world({"user1": entry()})
    state = logged_in(w)
    assert w.submission.message_refused(state, reply) == reply
    assert w.usage.names("refused") == ["policy"]


@pytest.mark.parametrize(
    "arg",
    [
        "FROM:<@relay.example:app@own.example>",
        "FROM: < @a.example,@b.example:app@own.example> SIZE=10",
        "FROM:<,@relay.example:app@own.example>",  # forms aiosmtpd strips a route from too
        "FROM:<(c)@relay.example:app@own.example>",
    ],
)
def test_a_source_route_at_mail_is_553_and_counted(arg: str) -> None:
    w = world({"user1": entry()})
    state = logged_in(w)
    assert run(w.submission.before_mail(state, arg)) == Refused(replies.SENDER_NOT_ALLOWED, POLICY)
    assert w.usage.names("refused") == ["policy"]


# --- revocation in a session -----------------------------------------------------------------------
def test_a_revocation_message_logs_the_session_out_at_its_next_rcpt_without_a_cache_read() -> None:
    cred = entry()
    w = world({"user1": cred})
    state = logged_in(w)
    assert w.submission.revoked(state) is None
    w.sessions.on_channel_message(revocation_message("user1", cred.credential_id))
    rechecks = w.cache.rechecks
    assert w.submission.revoked(state) == LoggedOut(replies.CREDENTIAL_REVOKED, ("revoked-in-session",))
    assert w.cache.rechecks == rechecks
    assert state.username is None and "user1" not in w.sessions._by_username
    assert w.submission.revoked(state) is None  # logged out: nothing left to refuse


def test_a_revocation_of_an_older_credential_spares_a_newer_one_with_the_same_username() -> None:
    old, new = entry(), entry(secret="new")
    w = world({"user1": new})
    state = new_state()
    assert isinstance(run(w.submission.authenticate(state, b"user1", b"new")), Accepted)
    w.sessions.on_channel_message(revocation_message("user1", old.credential_id))
    assert w.submission.revoked(state) is None


def test_mail_re_reads_the_credential_and_a_deactivated_one_is_logged_out() -> None:
    cred = entry()
    w = world({"user1": cred})
    state = logged_in(w)
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) is None
    w.cache.entries["user1"] = cred.model_copy(update={"active": False})  # no channel message
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) == LoggedOut(
        replies.CREDENTIAL_REVOKED, ("revoked-in-session",)
    )


def test_mail_with_the_cache_unreachable_is_a_temporary_454() -> None:
    w = world({"user1": entry()})
    state = logged_in(w)
    w.cache.down = True
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) == Refused(replies.AUTH_TEMPORARY_FAILURE)
    assert state.username == "user1"


def test_a_recent_re_check_is_reused_by_mail_but_a_revocation_message_clears_it() -> None:
    cred = entry()
    w = world({"user1": cred}, recheck_seconds=300)
    state = logged_in(w)
    run(w.submission.before_mail(state, "FROM:<app@own.example>"))
    rechecks = w.cache.rechecks
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) is None
    assert w.cache.rechecks == rechecks
    w.sessions.on_channel_message(revocation_message("user1", entry().credential_id))  # another credential of that name
    assert "user1" not in w.sessions.recent_checks


# --- end of DATA -----------------------------------------------------------------------------------
def test_a_message_is_relayed_with_our_received_header_and_queued() -> None:
    w = world({"user1": entry()})
    state = logged_in(w)
    decision = deliver(w, state)
    assert isinstance(decision, Accepted) and decision.reply.startswith(replies.QUEUED + " ")
    ((sender, recipients, message),) = w.upstream.sent
    assert (sender, recipients) == ("app@own.example", ["a@x.example"])
    assert message.startswith(b"Received: from client.test ([192.0.2.7])") and message.endswith(MESSAGE)


def test_a_credential_deactivated_before_the_end_of_data_is_refused_and_nothing_is_sent() -> None:
    cred = entry()
    w = world({"user1": cred})
    state = logged_in(w)
    w.cache.entries["user1"] = cred.model_copy(update={"active": False})
    assert deliver(w, state) == LoggedOut(replies.CREDENTIAL_REVOKED, ("revoked-in-session",))
    assert w.upstream.sent == []


def test_a_credential_re_created_with_a_new_secret_refuses_the_old_session_at_the_end_of_data() -> None:
    w = world({"user1": entry()})
    state = logged_in(w)
    w.cache.entries["user1"] = entry(secret="new")
    assert isinstance(deliver(w, state), LoggedOut)
    assert w.upstream.sent == []


def test_the_end_of_data_re_check_never_reuses_a_recent_check() -> None:
    cred = entry()
    w = world({"user1": cred}, recheck_seconds=300)
    state = logged_in(w)
    run(w.submission.before_mail(state, "FROM:<app@own.example>"))
    w.cache.entries["user1"] = cred.model_copy(update={"active": False})
    assert isinstance(deliver(w, state), LoggedOut)
    assert w.upstream.sent == []


def test_the_cache_unreachable_at_the_end_of_data_is_451_and_nothing_is_sent() -> None:
    w = world({"user1": entry()})
    state = logged_in(w)
    w.cache.down = True
    assert deliver(w, state) == Refused(replies.RECHECK_UNAVAILABLE, ("end-of-data-recheck-unavailable",))
    assert w.upstream.sent == []


def test_a_from_header_outside_the_domain_is_550_before_any_re_check() -> None:
    w = world({"user1": entry()})
    state = logged_in(w)
    rechecks = w.cache.rechecks
    message = MESSAGE.replace(b"From: app@own.example", b"From: boss@other.example")
    assert deliver(w, state, message) == Refused(replies.HEADER_FROM_NOT_ALLOWED, POLICY)
    assert w.cache.rechecks == rechecks and w.upstream.sent == []


def test_an_upstream_refusal_maps_to_the_clients_reply() -> None:
    w = world({"user1": entry()})
    state = logged_in(w)
    w.upstream.reply = UpstreamReply(False, 0, "ConnectionRefusedError")
    assert deliver(w, state) == Refused(replies.UPSTREAM_UNAVAILABLE, ("refused:upstream",))
    w.upstream.reply = UpstreamReply(False, 550, "5.1.1 no such user")
    assert deliver(w, state) == Refused("550 5.1.1 no such user", ("refused:upstream",))

"""The relay's "credential changed" notices (docs/api.md, "Credential lifecycle"), on fakes of its own ports: a notice
marks the user's live sessions, whose next RCPT or start of DATA re-reads the entry once and applies the change."""

from __future__ import annotations

from typing import Any

import pytest
from taifa_events.auth_cache import change_message
from taifa_relay.application.submission import Accepted, Refused
from taifa_relay.domain import replies

from tests.unit.relay.relay_fakes import (
    LOGGED_OUT,
    NEW,
    OLD,
    SUSPENDED,
    Clock,
    World,
    auth,
    deliver,
    entry,
    lifecycle_entry,
    rotated,
    run,
    secret,
    world,
)


def changed(w: World, cred: Any) -> None:
    """The projector's notice for `cred` arrives on the revocation channel."""
    w.sessions.on_channel_message(change_message("user1", cred.credential_id))


def test_after_a_grace_0_rotation_notice_the_next_rcpt_re_reads_once_and_logs_the_old_secrets_session_out() -> None:
    clock = Clock()
    cred = lifecycle_entry(secret(OLD))
    w = world({"user1": cred}, clock=clock)
    _, state = auth(w, OLD)
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) is None
    w.cache.entries["user1"] = later = lifecycle_entry(
        secret(NEW), cred.secrets[0].model_copy(update={"expires_at": int(clock.now)}), like=cred
    )
    changed(w, later)
    rechecks = w.cache.rechecks
    assert run(w.submission.before_rcpt_or_data(state)) == LOGGED_OUT
    assert w.cache.rechecks == rechecks + 1 and not state.logged_in


def test_after_a_secret_revoke_notice_the_start_of_data_logs_the_session_out() -> None:
    clock = Clock()
    w, cred = rotated(clock, grace=3600)
    _, state = auth(w, OLD)
    _, other = auth(w, NEW)
    assert run(w.submission.before_rcpt_or_data(state)) is None
    w.cache.entries["user1"] = lifecycle_entry(cred.secrets[0], like=cred)  # DELETE .../secrets/{old}
    changed(w, cred)
    assert run(w.submission.before_rcpt_or_data(state)) == LOGGED_OUT
    assert run(w.submission.before_rcpt_or_data(other)) is None  # the new secret's session re-reads and goes on
    rechecks = w.cache.rechecks
    assert run(w.submission.before_rcpt_or_data(other)) is None  # the mark is gone: no read
    assert w.cache.rechecks == rechecks


def test_after_a_suspension_notice_every_rcpt_gets_451_until_a_re_read_finds_it_resumed() -> None:
    active = lifecycle_entry(secret(NEW))
    w = world({"user1": active})
    _, state = auth(w, NEW)
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) is None
    w.cache.entries["user1"] = active.model_copy(update={"status": "suspended", "position": 3})
    changed(w, active)
    assert run(w.submission.before_rcpt_or_data(state)) == SUSPENDED
    assert run(w.submission.before_rcpt_or_data(state)) == SUSPENDED  # a second RCPT too: still marked
    assert state.logged_in
    w.cache.entries["user1"] = active.model_copy(update={"position": 4})
    changed(w, active)  # resumed
    assert run(w.submission.before_rcpt_or_data(state)) is None
    assert isinstance(deliver(w, state), Accepted)


@pytest.mark.parametrize("new_expiry", [None, 3600], ids=["lifted", "extended"])
def test_an_expiry_lifted_or_extended_during_a_transaction_is_read_before_the_old_one_logs_the_session_out(
    new_expiry: int | None,
) -> None:
    clock = Clock()
    cred = lifecycle_entry(secret(NEW), expires_at=int(clock.now + 5))
    w = world({"user1": cred}, clock=clock)
    _, state = auth(w, NEW)
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) is None
    later = lifecycle_entry(
        *cred.secrets, expires_at=None if new_expiry is None else int(clock.now + new_expiry), like=cred
    )
    w.cache.entries["user1"] = later  # PATCH expires_at, its notice marks the session
    changed(w, cred)
    clock.now += 5  # past the expiry the session read at MAIL
    assert run(w.submission.before_rcpt_or_data(state)) is None
    assert state.logged_in and state.login is not None and state.login.valid_until == later.expires_at
    assert isinstance(deliver(w, state), Accepted)


def test_an_expiry_moved_earlier_during_a_transaction_logs_the_session_out_at_its_next_rcpt() -> None:
    clock = Clock()
    cred = lifecycle_entry(secret(NEW), expires_at=int(clock.now + 3600))
    w = world({"user1": cred}, clock=clock)
    _, state = auth(w, NEW)
    w.cache.entries["user1"] = lifecycle_entry(*cred.secrets, expires_at=int(clock.now + 5), like=cred)
    changed(w, cred)
    clock.now += 5
    assert run(w.submission.before_rcpt_or_data(state)) == LOGGED_OUT


def test_after_an_allowlist_notice_a_session_outside_it_is_logged_out_at_its_next_rcpt() -> None:
    cred = lifecycle_entry(secret(NEW))
    w = world({"user1": cred})
    _, outside = auth(w, NEW, client_ip="198.51.100.1")
    _, inside = auth(w, NEW, client_ip="203.0.113.1")
    w.cache.entries["user1"] = lifecycle_entry(*cred.secrets, allowed_cidrs=("203.0.113.0/24",), like=cred)
    changed(w, cred)
    assert run(w.submission.before_rcpt_or_data(outside)) == LOGGED_OUT
    assert run(w.submission.before_rcpt_or_data(inside)) is None


def test_an_unmarked_session_reads_nothing_at_rcpt_and_a_notice_for_another_credential_marks_nothing() -> None:
    cred = lifecycle_entry(secret(NEW))
    w = world({"user1": cred})
    _, state = auth(w, NEW)
    rechecks = w.cache.rechecks
    changed(w, entry())  # another credential with the same username (an older one)
    for _ in range(3):
        assert run(w.submission.before_rcpt_or_data(state)) is None
    assert w.cache.rechecks == rechecks


def test_a_change_notice_never_revokes_and_clears_the_reuse_cache_of_that_username() -> None:
    cred = lifecycle_entry(secret(NEW))
    w = world({"user1": cred}, recheck_seconds=300)
    _, state = auth(w, NEW)
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) is None
    assert "user1" in w.sessions.recent_checks
    changed(w, cred)
    assert "user1" not in w.sessions.recent_checks and not state.revoked
    assert run(w.submission.before_rcpt_or_data(state)) is None  # the entry did not change: goes on


def test_a_marked_rcpt_with_the_cache_unreachable_is_temporary_and_the_session_stays_marked() -> None:
    clock = Clock()
    w, cred = rotated(clock, grace=3600)
    _, state = auth(w, OLD)
    w.cache.entries["user1"] = lifecycle_entry(cred.secrets[0], like=cred)
    changed(w, cred)
    w.cache.down = True
    assert run(w.submission.before_rcpt_or_data(state)) == Refused(replies.AUTH_TEMPORARY_FAILURE)  # as at MAIL
    w.cache.down = False
    assert run(w.submission.before_rcpt_or_data(state)) == LOGGED_OUT


def test_a_notice_arriving_during_a_re_read_keeps_the_session_marked() -> None:
    clock = Clock()
    w, cred = rotated(clock, grace=3600)
    _, state = auth(w, OLD)
    changed(w, cred)
    read = w.cache.reread

    async def read_then_change(username: str) -> Any:
        found = await read(username)  # the state before the revoke...
        w.cache.entries["user1"] = lifecycle_entry(cred.secrets[0], like=cred)
        changed(w, cred)  # ...whose notice arrives while the read is in flight
        return found

    w.cache.reread = read_then_change  # type: ignore[method-assign]
    assert run(w.submission.before_rcpt_or_data(state)) is None
    w.cache.reread = read  # type: ignore[method-assign]
    assert run(w.submission.before_rcpt_or_data(state)) == LOGGED_OUT


def test_a_resubscription_marks_every_session_for_one_re_read() -> None:
    clock = Clock()
    w, cred = rotated(clock, grace=3600)
    _, state = auth(w, OLD)
    _, other = auth(w, NEW)
    w.cache.entries["user1"] = lifecycle_entry(cred.secrets[0], like=cred)  # its notice was missed
    rechecks = w.cache.rechecks
    assert run(w.submission.before_rcpt_or_data(state)) is None  # unmarked: nothing read, nothing known
    w.sessions.forget_rechecks()  # the channel subscribed again
    assert run(w.submission.before_rcpt_or_data(state)) == LOGGED_OUT
    assert run(w.submission.before_rcpt_or_data(other)) is None
    assert run(w.submission.before_rcpt_or_data(other)) is None
    assert w.cache.rechecks == rechecks + 2  # once each after the resubscription, then nothing

"""The credential lifecycle on the relay (docs/api.md, "Credential lifecycle"), on fakes of its own ports: AUTH with
two secrets and a grace period, expiry, allowlists, suspension, the `tmsmtp_` checksum refused before any lookup,
and live sessions refused at their next command once their secret is retired, their credential expires or is
suspended. The relay's clock is a fake moved by hand; the entries are v2 entries as the projector writes them."""

from __future__ import annotations

import pytest
from taifa_events.secrets import new_smtp_password
from taifa_relay.application.submission import Accepted, Close, Refused
from taifa_relay.domain import replies

from tests.unit.relay.relay_fakes import (
    LOGGED_OUT,
    NEW,
    OLD,
    SUSPENDED,
    Clock,
    auth,
    deliver,
    entry,
    lifecycle_entry,
    new_state,
    rotated,
    run,
    secret,
    world,
)

REFUSED = Refused(replies.AUTH_INVALID, ("failure",))


# --- AUTH ------------------------------------------------------------------------------------------
def test_during_the_grace_period_both_secrets_log_in_and_the_old_one_is_refused_once_it_expires() -> None:
    clock = Clock()
    w, _ = rotated(clock, grace=3600)
    assert auth(w, NEW)[0] == Accepted(replies.AUTH_SUCCESS, ("success",))
    assert auth(w, OLD)[0] == Accepted(replies.AUTH_SUCCESS, ("success",))
    clock.now += 3600  # the grace period ends: no event, the relay's clock says so
    assert auth(w, OLD)[0] == REFUSED
    assert auth(w, NEW)[0] == Accepted(replies.AUTH_SUCCESS, ("success",))


def test_a_revoked_secret_is_refused_with_the_same_535_and_counted() -> None:
    clock = Clock()
    w, cred = rotated(clock, grace=3600)
    w.cache.entries["user1"] = lifecycle_entry(cred.secrets[0], like=cred)  # DELETE .../secrets/{old}
    assert auth(w, OLD)[0] == REFUSED
    assert w.cache.for_address["192.0.2.7"] == 1


def test_the_login_remembers_which_secret_it_used() -> None:
    clock = Clock()
    w, cred = rotated(clock, grace=60)
    _, state = auth(w, OLD)
    assert state.login is not None and state.login.secret_id == cred.secrets[1].id
    assert state.login.valid_until == cred.secrets[1].expires_at


def test_an_expired_credential_is_refused_with_the_same_535_even_with_its_newest_secret() -> None:
    clock = Clock()
    w = world({"user1": lifecycle_entry(secret(NEW), expires_at=int(clock.now + 10))}, clock=clock)
    assert isinstance(auth(w, NEW)[0], Accepted)
    clock.now += 10
    assert auth(w, NEW)[0] == REFUSED


@pytest.mark.parametrize(
    ("cidrs", "client_ip", "allowed"),
    [
        (("203.0.113.0/24",), "203.0.113.9", True),
        (("203.0.113.0/24",), "198.51.100.9", False),
        (("203.0.113.0/24",), "::ffff:203.0.113.9", True),  # IPv4-mapped: compared as IPv4
        (("203.0.113.0/24",), "::ffff:198.51.100.9", False),
        (("2001:db8::/48",), "2001:db8:0:1::5", True),
        (("2001:db8::/48",), "2001:db9::5", False),
        (("2001:db8::/48", "203.0.113.0/24"), "203.0.113.1", True),
        ((), "2001:db9::5", True),  # [] = any address
    ],
)
def test_the_allowlist_decides_with_the_sessions_client_address(
    cidrs: tuple[str, ...], client_ip: str, allowed: bool
) -> None:
    w = world({"user1": lifecycle_entry(secret(NEW), allowed_cidrs=cidrs)})
    decision, _ = auth(w, NEW, client_ip=client_ip)
    assert decision == (Accepted(replies.AUTH_SUCCESS, ("success",)) if allowed else REFUSED)


def test_a_wrong_password_from_an_allowed_address_and_the_right_one_from_outside_get_the_same_reply() -> None:
    w = world({"user1": lifecycle_entry(secret(NEW), allowed_cidrs=("203.0.113.0/24",))}, per_connection=10)
    outside, _ = auth(w, NEW, client_ip="198.51.100.1")
    wrong, _ = auth(w, "wrong", client_ip="203.0.113.1")
    assert outside == wrong == REFUSED


def test_a_tmsmtp_password_with_a_wrong_checksum_is_refused_without_any_cache_command() -> None:
    good = new_smtp_password()
    broken = good[:-1] + ("A" if good[-1] != "A" else "B")
    w = world({"user1": lifecycle_entry(secret(good))}, per_connection=2)
    state = new_state()
    first = run(w.submission.authenticate(state, b"user1", broken.encode()))
    assert first == REFUSED
    assert (w.cache.lookups, w.cache.for_username, w.cache.for_address) == (0, {}, {})
    # It still counts toward this connection's limit: the second one closes it.
    assert isinstance(run(w.submission.authenticate(state, b"user1", broken[:-3].encode())), Close)
    assert w.cache.lookups == 0
    # The same password with its checksum intact logs in; an old-format password is looked up as before.
    assert isinstance(auth(w, good)[0], Accepted)
    v1 = world({"user1": entry(secret="oldFormat-Secret_44chars")})
    assert isinstance(auth(v1, "oldFormat-Secret_44chars")[0], Accepted)


def test_a_suspended_credential_logs_in_and_its_mail_gets_451_until_it_is_resumed() -> None:
    active = lifecycle_entry(secret(NEW))
    w = world({"user1": active.model_copy(update={"status": "suspended"})})
    decision, state = auth(w, NEW)
    assert decision == Accepted(replies.AUTH_SUCCESS, ("success",))
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) == SUSPENDED
    assert state.logged_in  # still logged in: it retries and is served once resumed
    w.cache.entries["user1"] = active
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) is None


def test_an_auth_plain_authorization_identity_other_than_the_username_is_refused_like_a_wrong_password() -> None:
    # RFC 4616 §2: the relay authorises nobody to act as another user; the username itself, or none, is fine.
    w = world({"user1": lifecycle_entry(secret(NEW))}, per_connection=10)
    for authzid, accepted in ((b"", True), (b"user1", True), (b" USER1 ", True), (b"user2", False)):
        state = new_state()
        decision = run(w.submission.authenticate(state, b"user1", NEW.encode(), authzid))
        assert decision == (Accepted(replies.AUTH_SUCCESS, ("success",)) if accepted else REFUSED), authzid
        assert state.logged_in is accepted
    wrong, _ = auth(w, "wrong")
    assert wrong == REFUSED  # the same reply as a wrong password


# --- live sessions ---------------------------------------------------------------------------------
def test_a_live_session_whose_secret_is_revoked_is_logged_out_at_its_next_mail() -> None:
    clock = Clock()
    w, cred = rotated(clock, grace=3600)
    _, state = auth(w, OLD)
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) is None
    w.cache.entries["user1"] = lifecycle_entry(cred.secrets[0], like=cred)
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) == LOGGED_OUT
    assert not state.logged_in
    # A session that logged in with the new secret is untouched.
    _, other = auth(w, NEW)
    assert run(w.submission.before_mail(other, "FROM:<app@own.example>")) is None


def test_a_rotation_with_grace_0_logs_out_a_session_of_the_old_secret_at_its_next_mail() -> None:
    clock = Clock()
    cred = lifecycle_entry(secret(OLD))
    w = world({"user1": cred}, clock=clock)
    _, state = auth(w, OLD)
    w.cache.entries["user1"] = lifecycle_entry(
        secret(NEW), cred.secrets[0].model_copy(update={"expires_at": int(clock.now)}), like=cred
    )
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) == LOGGED_OUT


def test_the_end_of_the_grace_period_refuses_the_next_rcpt_and_data_by_the_clock_alone() -> None:
    clock = Clock()
    w, _ = rotated(clock, grace=60)
    _, state = auth(w, OLD)
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) is None
    assert w.submission.revoked(state) is None
    rechecks = w.cache.rechecks
    clock.now += 60
    assert w.submission.revoked(state) == LOGGED_OUT  # RCPT / start of DATA: no cache command
    assert w.cache.rechecks == rechecks and not state.logged_in


def test_a_grace_period_set_after_the_login_is_learnt_at_mail_and_enforced_at_rcpt() -> None:
    clock = Clock()
    cred = lifecycle_entry(secret(OLD))
    w = world({"user1": cred}, clock=clock)
    _, state = auth(w, OLD)
    w.cache.entries["user1"] = lifecycle_entry(
        secret(NEW), cred.secrets[0].model_copy(update={"expires_at": int(clock.now + 30)}), like=cred
    )
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) is None  # in grace: goes on
    clock.now += 30
    assert w.submission.revoked(state) == LOGGED_OUT


def test_a_credential_that_expires_during_a_session_refuses_its_next_mail_and_rcpt() -> None:
    clock = Clock()
    w = world({"user1": lifecycle_entry(secret(NEW), expires_at=int(clock.now + 5))}, clock=clock)
    _, state = auth(w, NEW)
    _, other = auth(w, NEW)
    clock.now += 5
    assert w.submission.revoked(state) == LOGGED_OUT
    assert run(w.submission.before_mail(other, "FROM:<app@own.example>")) == LOGGED_OUT


def test_suspension_during_a_session_gives_451_at_mail_and_at_the_end_of_data_and_nothing_is_sent() -> None:
    active = lifecycle_entry(secret(NEW))
    w = world({"user1": active})
    _, state = auth(w, NEW)
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) is None
    w.cache.entries["user1"] = active.model_copy(update={"status": "suspended"})
    assert deliver(w, state) == SUSPENDED  # the open transaction: the end-of-DATA re-read
    assert w.upstream.sent == [] and state.logged_in
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) == SUSPENDED
    w.cache.entries["user1"] = active
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) is None
    assert isinstance(deliver(w, state), Accepted)


def test_a_secret_retired_between_rcpt_and_the_end_of_data_stops_the_message() -> None:
    clock = Clock()
    w, cred = rotated(clock, grace=3600)
    _, state = auth(w, OLD)
    assert run(w.submission.before_mail(state, "FROM:<app@own.example>")) is None
    w.cache.entries["user1"] = lifecycle_entry(cred.secrets[0], like=cred)
    assert deliver(w, state) == LOGGED_OUT
    assert w.upstream.sent == []


def test_an_allowlist_added_during_a_session_cuts_a_session_from_outside_it_at_its_next_mail() -> None:
    cred = lifecycle_entry(secret(NEW))
    w = world({"user1": cred})
    _, outside = auth(w, NEW, client_ip="198.51.100.1")
    _, inside = auth(w, NEW, client_ip="203.0.113.1")
    w.cache.entries["user1"] = lifecycle_entry(*cred.secrets, allowed_cidrs=("203.0.113.0/24",), like=cred)
    assert run(w.submission.before_mail(outside, "FROM:<app@own.example>")) == LOGGED_OUT
    assert run(w.submission.before_mail(inside, "FROM:<app@own.example>")) is None


def test_a_reused_recent_read_still_applies_each_sessions_own_secret_and_clock() -> None:
    clock = Clock()
    w, _ = rotated(clock, grace=60)
    w = world(w.cache.entries, clock=clock, recheck_seconds=300)
    _, old_session = auth(w, OLD)
    _, new_session = auth(w, NEW)
    assert run(w.submission.before_mail(new_session, "FROM:<app@own.example>")) is None  # fills the reuse cache
    clock.now += 60
    rechecks = w.cache.rechecks
    assert run(w.submission.before_mail(old_session, "FROM:<app@own.example>")) == LOGGED_OUT
    assert w.cache.rechecks == rechecks  # the reused read, judged for this session's own secret

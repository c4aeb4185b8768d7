"""The relay's session registry and admission rules without a socket: the caps per client address group and per
process, the connection-rate window, release, and what a revocation message reaches."""

from __future__ import annotations

import asyncio

from taifa_events.auth_cache import revocation_message
from taifa_relay.domain import replies
from taifa_relay.domain.limits import Admission, AdmissionLimits

from tests.unit.relay.relay_fakes import entry, new_state, world

LIMITS = AdmissionLimits(max_sessions=3, max_sessions_per_client=2, max_connections_per_minute=4)


def test_a_client_over_its_session_cap_is_refused_and_others_are_not() -> None:
    w = world(admission=LIMITS)
    first, second, third = object(), object(), object()
    assert w.sessions.admit(first, new_state("192.0.2.7")) is None
    assert w.sessions.admit(second, new_state("192.0.2.7")) is None
    assert w.sessions.admit(third, new_state("192.0.2.7")) == replies.TOO_MANY_SESSIONS
    assert w.sessions.admit(third, new_state("192.0.2.8")) is None
    assert w.sessions.sessions == {first, second, third}


def test_an_ipv6_64_counts_as_one_client() -> None:
    w = world(admission=LIMITS)
    assert w.sessions.admit(object(), new_state("2001:db8:1:2::1")) is None
    assert w.sessions.admit(object(), new_state("2001:db8:1:2::ffff")) is None
    assert w.sessions.admit(object(), new_state("2001:db8:1:2::abcd")) == replies.TOO_MANY_SESSIONS


def test_the_process_cap_refuses_every_client_once_full() -> None:
    w = world(admission=LIMITS)
    for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        assert w.sessions.admit(object(), new_state(ip)) is None
    assert w.sessions.admit(object(), new_state("192.0.2.4")) == replies.SERVER_BUSY


def test_release_frees_the_clients_slot_and_leaves_nothing_behind() -> None:
    w = world({"user1": entry()}, admission=LIMITS)
    connection, state = object(), new_state()
    assert w.sessions.admit(connection, state) is None
    asyncio.run(w.submission.authenticate(state, b"user1", b"right"))
    assert w.sessions.no_sessions.is_set() is False
    w.sessions.release(connection, state)
    assert not w.sessions.sessions and w.sessions.no_sessions.is_set()
    assert not w.sessions.admission.per_client and not w.sessions._by_username


def test_the_connection_rate_counts_refused_connections_and_resets_after_a_minute() -> None:
    admission = Admission(AdmissionLimits(100, 1, 3), now=0.0)
    assert admission.admit("192.0.2.7", 1.0) is None
    assert admission.admit("192.0.2.7", 2.0) == replies.TOO_MANY_SESSIONS
    assert admission.admit("192.0.2.7", 3.0) == replies.TOO_MANY_SESSIONS
    assert admission.admit("192.0.2.7", 4.0) == replies.TOO_MANY_CONNECTIONS
    admission.release("192.0.2.7")
    assert admission.admit("192.0.2.7", 59.0) == replies.TOO_MANY_CONNECTIONS
    assert admission.admit("192.0.2.7", 60.0) is None


def test_a_plain_username_revocation_reaches_every_session_of_that_name_and_no_other() -> None:
    w = world({"user1": entry(), "user2": entry()})
    states = [new_state(), new_state(), new_state()]
    for state, name in zip(states, (b"user1", b"user1", b"user2"), strict=True):
        asyncio.run(w.submission.authenticate(state, name, b"right"))
    w.sessions.on_channel_message("user1")
    assert [state.revoked for state in states] == [True, True, False]


def test_an_unreadable_revocation_message_changes_nothing() -> None:
    w = world({"user1": entry()})
    state = new_state()
    asyncio.run(w.submission.authenticate(state, b"user1", b"right"))
    w.sessions.on_channel_message('{"credential_id": "x"}')
    w.sessions.on_channel_message(revocation_message("user1", entry().credential_id))
    assert not state.revoked


def test_drain_returns_the_sessions_still_open_after_the_grace_period() -> None:
    w = world(admission=LIMITS)
    connection = object()
    assert w.sessions.admit(connection, new_state()) is None

    async def drained() -> list[object]:
        return await w.sessions.drain(0.01)

    assert asyncio.run(drained()) == [connection]

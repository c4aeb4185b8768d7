"""Revocation, exactly: the end-of-DATA re-check, revocations per credential id, the re-check reuse cache and
re-AUTH on one connection (a deactivated credential is refused at once, a newer one with the same name is not)."""

from __future__ import annotations

import smtplib
import uuid
from typing import Any

import redis as redis_lib
from taifa_events.auth_cache import REVOCATIONS_CHANNEL
from taifa_localstack import Redis, wait_until

from tests.integration.relay.support import Certs, Client, Credentials, Sink, auth, message

REVOKED = (535, b"5.7.8 Authentication credentials no longer valid")


def _delivered(sink: Sink, subject: str) -> bool:
    return any(f"Subject: {subject}".encode() in raw for raw in sink.messages())


def test_a_tombstone_without_a_channel_message_between_rcpt_and_end_of_data_is_refused_and_nothing_is_sent(
    client: Client, credentials: Credentials, sink: Sink
) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    subject = f"must-not-leave-{uuid.uuid4().hex}"
    with client.login(cred) as smtp:
        assert smtp.mail(sender)[0] == 250
        assert smtp.rcpt("a@dest.example")[0] == 250
        credentials.deactivate(cred, publish=False)  # as if the message was lost while the relay resubscribed
        assert smtp.data(message(sender, subject=subject)) == REVOKED
        assert smtp.docmd(f"MAIL FROM:<{sender}>")[0] == 530  # the login is gone
    assert not _delivered(sink, subject)


def test_a_re_created_credential_with_the_same_username_and_a_new_secret_refuses_the_old_session_at_end_of_data(
    client: Client, credentials: Credentials, sink: Sink
) -> None:
    """Same username, new credential id and secret (deactivate + re-create): the old session may not send."""
    old = credentials.create()
    sender = f"app@{old.domain}"
    subject = f"old-secret-{uuid.uuid4().hex}"
    with client.login(old) as smtp:
        assert smtp.mail(sender)[0] == 250
        assert smtp.rcpt("a@dest.example")[0] == 250
        credentials.create(old.domain, username=old.username)  # the entry now holds another credential, active
        assert smtp.data(message(sender, subject=subject)) == REVOKED
    assert not _delivered(sink, subject)


def test_redis_unreachable_at_end_of_data_is_a_temporary_refusal_and_nothing_is_sent(
    make_relay: Any, certs: Certs, sink: Sink, tmp_path: Any
) -> None:
    own = Redis(tmp_path / "redis")
    own.start()
    try:
        cred = Credentials(redis_lib.Redis.from_url(own.url)).create()
        relay = make_relay(redis_url=own.url)
        sender = f"app@{cred.domain}"
        subject = f"redis-gone-{uuid.uuid4().hex}"
        with Client(relay, certs).login(cred) as smtp:
            assert smtp.mail(sender)[0] == 250
            assert smtp.rcpt("a@dest.example")[0] == 250
            own.stop()
            # Refused for now either at the start of DATA (the relay saw its revocation channel drop and the session
            # re-reads its credential: 454 4.7.0) or at its end (the unconditional re-read: 451 4.3.0).
            try:
                answer = smtp.data(message(sender, subject=subject))
            except smtplib.SMTPDataError as refused:  # DATA itself refused: smtplib raises
                answer = (refused.smtp_code, refused.smtp_error)
            assert answer in (
                (454, b"4.7.0 Temporary authentication failure"),
                (451, b"4.3.0 Temporary authentication failure, try again later"),
            )
        assert not _delivered(sink, subject)
    finally:
        own.stop()


def test_the_old_credentials_revocation_drops_its_sessions_but_not_those_of_a_new_credential_with_the_same_name(
    client: Client, credentials: Credentials
) -> None:
    old = credentials.create()
    with client.login(old) as old_session:
        assert old_session.mail(f"app@{old.domain}")[0] == 250
        credentials.deactivate(old, publish=False)
        new = credentials.create(old.domain, username=old.username)
        with client.login(new) as new_session:
            assert new_session.mail(f"app@{new.domain}")[0] == 250
            credentials.publish_revocation(old)  # the projector's message: username + the OLD credential id

            def old_refused() -> bool:  # RCPT trusts the channel message only: it must have arrived
                return old_session.rcpt("a@dest.example")[0] == 535

            wait_until(old_refused, 5, "RCPT of the old credential's session refused")
            for _ in range(3):
                assert new_session.rcpt("a@dest.example")[0] == 250
            assert new_session.data(message(f"app@{new.domain}"))[0] == 250


def test_a_plain_username_revocation_message_still_drops_every_session_of_that_name(
    client: Client, credentials: Credentials, rdb: redis_lib.Redis
) -> None:
    cred = credentials.create()
    with client.login(cred) as smtp:
        assert smtp.mail(f"app@{cred.domain}")[0] == 250
        rdb.publish(REVOCATIONS_CHANNEL, cred.username)  # the seed's form: no credential id
        wait_until(lambda: smtp.rcpt("a@dest.example")[0] == 535, 5, "RCPT refused after a plain revocation")


def test_with_a_recheck_cache_a_revoked_session_cannot_send_even_before_the_cache_expires(
    make_relay: Any, certs: Certs, credentials: Credentials, sink: Sink
) -> None:
    relay = make_relay(relay_recheck_cache_seconds=300)
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    subject = f"reuse-cache-{uuid.uuid4().hex}"
    with Client(relay, certs).login(cred) as smtp:
        assert smtp.sendmail(sender, ["a@dest.example"], message(sender)) == {}  # fills the reuse cache
        credentials.deactivate(cred, publish=False)
        assert smtp.mail(sender)[0] == 250  # MAIL may reuse the earlier re-check...
        assert smtp.rcpt("a@dest.example")[0] == 250
        assert smtp.data(message(sender, subject=subject)) == REVOKED  # ...the end of DATA never does
    assert not _delivered(sink, subject)


def test_a_revocation_message_clears_the_recheck_cache_of_that_credential(
    make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    relay = make_relay(relay_recheck_cache_seconds=300)
    sessions = relay.relay.parts.sessions
    cred = credentials.create()
    with Client(relay, certs).login(cred) as smtp:
        assert smtp.mail(f"app@{cred.domain}")[0] == 250
        assert cred.username in sessions.recent_checks
        credentials.deactivate(cred)
        wait_until(lambda: cred.username not in sessions.recent_checks, 5, "reuse cache entry cleared")
        assert smtp.docmd("RSET")[0] == 250
        assert smtp.docmd(f"MAIL FROM:<app@{cred.domain}>") == REVOKED


def test_re_auth_on_one_connection_leaves_no_stale_username_and_the_old_names_revocation_spares_it(
    client: Client, credentials: Credentials, rdb: redis_lib.Redis
) -> None:
    sessions = client.relay.relay.parts.sessions
    first, second, marker = credentials.create(), credentials.create(), credentials.create()
    with client.login(first) as smtp, client.login(marker) as marker_session:
        assert smtp.mail(f"app@{first.domain}")[0] == 250
        credentials.deactivate(first)
        wait_until(lambda: smtp.rcpt("a@dest.example")[0] == 535, 5, "first login dropped")
        assert auth(smtp, "PLAIN", second.username, second.password)[0] == 235
        assert first.username not in sessions._by_username
        assert in_sessions_of(sessions, second.username) == [second.username]
        rdb.publish(REVOCATIONS_CHANNEL, first.username)  # every session of the FIRST name (plain form)
        credentials.publish_revocation(first)
        # Messages on one channel arrive in order: once the marker's revocation is applied, so are those above.
        assert marker_session.mail(f"app@{marker.domain}")[0] == 250
        credentials.deactivate(marker)
        wait_until(lambda: marker_session.rcpt("a@dest.example")[0] == 535, 5, "marker revocation applied")
        assert smtp.mail(f"app@{second.domain}")[0] == 250
        assert smtp.rcpt("a@dest.example")[0] == 250
        assert smtp.data(message(f"app@{second.domain}"))[0] == 250


def in_sessions_of(sessions: Any, username: str) -> list[str]:
    """The usernames of the sessions indexed under `username` (what a revocation of that name reaches)."""
    return [state.username for state in sessions._by_username.get(username, ())]

"""The credential lifecycle on a real relay and a real Redis (docs/api.md, "Credential lifecycle"): rotation with
a grace period the relay ends by its own clock, a revoked previous secret, suspension (451 4.7.1 at MAIL, AUTH still
succeeds), the address allowlist (also through the PROXY protocol, IPv6), credential expiry, the `tmsmtp_` checksum
refused before any Redis command, and v1 entries still read. The entries are v2 entries as the projector writes
them (taifa_localstack.authcache)."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import redis as redis_lib
from taifa_events.auth_cache import auth_key
from taifa_localstack import wait_until

from tests.integration.relay.raw_client import Raw, plain_auth_arg
from tests.integration.relay.support import Certs, Client, Credentials, Sink, auth, message, metric

INVALID = (535, b"5.7.8 Authentication credentials invalid")
NO_LONGER_VALID = (535, b"5.7.8 Authentication credentials no longer valid")
SUSPENDED = (451, b"4.7.1 Credential suspended, try again later")


def _delivered(sink: Sink, subject: str) -> bool:
    return any(f"Subject: {subject}".encode() in raw for raw in sink.messages())


def test_both_secrets_log_in_during_the_grace_period_and_revoking_the_previous_one_ends_its_sessions(
    client: Client, credentials: Credentials
) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    with client.login(cred) as old_session:
        previous = credentials.rotate(cred, grace_seconds=3600)
        assert old_session.sendmail(sender, ["a@dest.example"], message(sender)) == {}  # in grace: sends on
        with client.tls() as smtp:
            assert auth(smtp, "PLAIN", cred.username, previous)[0] == 235
        with client.login(cred) as new_session:  # the new tmsmtp_ password
            credentials.revoke_previous_secret(cred)
            assert old_session.docmd(f"MAIL FROM:<{sender}>") == NO_LONGER_VALID
            assert new_session.sendmail(sender, ["a@dest.example"], message(sender)) == {}
        with client.tls() as smtp:
            assert auth(smtp, "PLAIN", cred.username, previous) == INVALID


def test_the_grace_period_ends_by_the_relays_clock_for_new_logins_and_at_the_next_rcpt_of_a_live_session(
    client: Client, credentials: Credentials
) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    with client.login(cred) as live:
        previous = credentials.rotate(cred, grace_seconds=2)
        assert live.mail(sender)[0] == 250  # learns the previous secret's expiry from the entry
        ends = cred.entry.secrets[1].expires_at
        assert ends is not None

        def expired_logins_refused() -> bool:
            with client.tls() as smtp:
                return auth(smtp, "PLAIN", cred.username, previous) == INVALID

        wait_until(expired_logins_refused, 10, "the previous secret refused once its grace period ended")
        wait_until(lambda: time.time() >= ends, 5, "the relay's clock past the end of the grace period")
        assert live.docmd("RCPT TO:<a@dest.example>") == NO_LONGER_VALID  # no event, no Redis read: the clock
        assert live.docmd(f"MAIL FROM:<{sender}>")[0] == 530


def test_a_rotation_with_grace_0_refuses_the_previous_secret_at_once_and_its_session_at_the_next_mail(
    client: Client, credentials: Credentials
) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    with client.login(cred) as live:
        previous = credentials.rotate(cred, grace_seconds=0)
        assert live.docmd(f"MAIL FROM:<{sender}>") == NO_LONGER_VALID
        with client.tls() as smtp:
            assert auth(smtp, "PLAIN", cred.username, previous) == INVALID
            assert auth(smtp, "PLAIN", cred.username, cred.password)[0] == 235


def test_a_suspended_credential_logs_in_gets_451_at_mail_and_sends_again_once_resumed(
    client: Client, credentials: Credentials, sink: Sink
) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    subject = f"resumed-{uuid.uuid4().hex}"
    with client.login(cred) as live:
        assert live.mail(sender)[0] == 250
        assert live.rcpt("a@dest.example")[0] == 250
        credentials.change(cred, status="suspended", notify=False)  # its notice missed: the end-of-DATA re-read
        assert live.data(message(sender)) == SUSPENDED  # the open transaction: nothing relayed
        assert live.docmd("RSET")[0] == 250
        assert live.docmd(f"MAIL FROM:<{sender}>") == SUSPENDED  # live session, from the suspension on
        with client.login(cred) as fresh:  # AUTH still succeeds
            assert fresh.docmd(f"MAIL FROM:<{sender}>") == SUSPENDED
        credentials.change(cred, status="active")
        assert live.sendmail(sender, ["a@dest.example"], message(sender, subject=subject)) == {}
    assert _delivered(sink, subject)


def test_a_login_from_outside_the_allowlist_gets_the_same_535_and_a_live_session_outside_it_is_cut(
    client: Client, credentials: Credentials
) -> None:
    cred = credentials.create()
    with client.login(cred, source="127.0.0.1") as outside_session:
        credentials.change(cred, allowed_cidrs=("127.0.0.64/26",))
        with client.tls(source="127.0.0.1") as smtp:
            assert auth(smtp, "PLAIN", cred.username, cred.password) == INVALID
        with client.login(cred, source="127.0.0.70") as inside:
            assert inside.mail(f"app@{cred.domain}")[0] == 250
        assert outside_session.docmd(f"MAIL FROM:<app@{cred.domain}>") == NO_LONGER_VALID


def test_the_allowlist_applies_to_the_proxy_protocol_source_address_ipv6_included(
    make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    relay = make_relay(relay_proxy_protocol=True)
    cred = credentials.create()
    credentials.change(cred, allowed_cidrs=("2001:db8:5::/48", "192.0.2.0/24"))

    def auth_from(source: str) -> str:
        raw = Raw(relay.submission_port, certs=certs)
        family = "TCP6" if ":" in source else "TCP4"
        destination = "2001:db8::25" if family == "TCP6" else "192.0.2.25"
        raw.send(f"PROXY {family} {source} {destination} 40000 587\r\n".encode())
        try:
            assert raw.reply().startswith("220")
            assert raw.command("EHLO raw.test").startswith("250")
            assert raw.command("STARTTLS").startswith("220")
            raw.starttls()
            assert raw.command("EHLO raw.test").startswith("250")
            return raw.command(f"AUTH PLAIN {plain_auth_arg(cred.username, cred.password)}")
        finally:
            raw.close()

    assert auth_from("2001:db8:5:1::9").startswith("235")
    assert auth_from("192.0.2.44").startswith("235")
    assert auth_from("2001:db8:6::9") == "535 5.7.8 Authentication credentials invalid"
    assert auth_from("198.51.100.4") == "535 5.7.8 Authentication credentials invalid"


def test_an_expired_credential_gets_the_same_535_and_its_live_session_is_refused_at_the_next_mail(
    client: Client, credentials: Credentials
) -> None:
    cred = credentials.create()
    with client.login(cred) as live:
        credentials.change(cred, expires_at=int(time.time()) - 1)
        assert live.docmd(f"MAIL FROM:<app@{cred.domain}>") == NO_LONGER_VALID
        with client.tls() as smtp:
            assert auth(smtp, "PLAIN", cred.username, cred.password) == INVALID


def _address_counts(rdb: redis_lib.Redis) -> dict[bytes, bytes | None]:
    return {key: rdb.get(key) for key in rdb.scan_iter("taifa:relay:authfail:addr:*")}


def test_a_tmsmtp_password_with_a_wrong_checksum_is_refused_without_any_redis_command(
    client: Client, credentials: Credentials, rdb: redis_lib.Redis
) -> None:
    cred = credentials.create()
    credentials.rotate(cred, grace_seconds=0)  # a tmsmtp_ password
    broken = cred.password[:-1] + ("A" if cred.password[-1] != "A" else "B")
    lookups = metric("taifa_relay_auth_lookups_total")
    digest = hashlib.sha256(cred.username.encode()).hexdigest()[:32]
    before = _address_counts(rdb)
    with client.tls() as smtp:
        assert auth(smtp, "PLAIN", cred.username, broken) == INVALID
        assert metric("taifa_relay_auth_lookups_total") == lookups
        # Not counted in Redis either: no counter of this username, and no address's count changed (other
        # tests' counters may expire meanwhile; the readiness probe's key is not a counter).
        assert list(rdb.scan_iter(f"taifa:relay:authfail:user:*:{digest}")) == []
        after = _address_counts(rdb)
        assert set(after) <= set(before)
        assert all(after[key] == before[key] for key in after)
        assert auth(smtp, "PLAIN", cred.username, cred.password)[0] == 235


def test_a_v1_entry_without_a_format_field_still_logs_in_with_its_old_format_password(
    client: Client, credentials: Credentials, rdb: redis_lib.Redis
) -> None:
    cred = credentials.create()
    v1_fields = ("credential_id", "account_id", "domain_id", "domain", "secret_hash", "hash_scheme", "active")
    stored = cred.entry.to_redis()
    rdb.delete(auth_key(cred.username))
    rdb.hset(auth_key(cred.username), mapping={**{k: stored[k] for k in v1_fields}, "position": stored["position"]})
    assert not rdb.hexists(auth_key(cred.username), "format")
    assert not cred.password.startswith("tmsmtp_")
    with client.login(cred) as smtp:
        assert smtp.sendmail(f"app@{cred.domain}", ["a@dest.example"], message(f"app@{cred.domain}")) == {}


# --- "credential changed" notices: a session past MAIL is refused at its next RCPT / start of DATA ----------
def _marked(client: Client, cred: Any) -> bool:
    """The relay has applied the credential's "credential changed" notice to its live sessions."""
    sessions = client.relay.relay.parts.sessions
    return any(state.recheck for state in sessions._by_username.get(cred.username, ()))


def test_a_session_past_mail_is_refused_at_its_next_rcpt_after_a_grace_0_rotation(
    client: Client, credentials: Credentials
) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    with client.login(cred) as live:
        assert live.mail(sender)[0] == 250
        credentials.rotate(cred, grace_seconds=0)
        wait_until(lambda: _marked(client, cred), 5, "the rotation's notice applied")
        assert live.docmd("RCPT TO:<a@dest.example>") == NO_LONGER_VALID
        assert live.docmd(f"MAIL FROM:<{sender}>")[0] == 530  # logged out
        with client.login(cred) as fresh:  # the new password
            assert fresh.sendmail(sender, ["a@dest.example"], message(sender)) == {}


def test_a_session_past_rcpt_is_refused_at_the_start_of_data_after_its_secret_is_revoked(
    client: Client, credentials: Credentials
) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    with client.login(cred) as old_session:
        credentials.rotate(cred, grace_seconds=3600)
        assert old_session.mail(sender)[0] == 250  # in grace
        assert old_session.rcpt("a@dest.example")[0] == 250
        credentials.revoke_previous_secret(cred)
        wait_until(lambda: _marked(client, cred), 5, "the secret revocation's notice applied")
        assert old_session.docmd("DATA") == NO_LONGER_VALID  # no 354: nothing of the message is read


def test_a_session_past_mail_gets_451_at_its_next_rcpt_and_data_after_a_suspension(
    client: Client, credentials: Credentials, sink: Sink
) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    subject = f"suspended-rcpt-{uuid.uuid4().hex}"
    with client.login(cred) as live:
        assert live.mail(sender)[0] == 250
        assert live.rcpt("a@dest.example")[0] == 250
        credentials.change(cred, status="suspended")
        wait_until(lambda: _marked(client, cred), 5, "the suspension's notice applied")
        assert live.docmd("RCPT TO:<b@dest.example>") == SUSPENDED
        assert live.docmd("RCPT TO:<c@dest.example>") == SUSPENDED  # every command while suspended
        assert live.docmd("DATA") == SUSPENDED
        credentials.change(cred, status="active")
        assert live.docmd("RSET")[0] == 250
        assert live.sendmail(sender, ["a@dest.example"], message(sender, subject=subject)) == {}
    assert _delivered(sink, subject)

"""Failed-AUTH throttling per (client address, username) with a low threshold and per client address with a much
higher one (docs/api.md, "Reply codes"): one stale credential on a shared address never locks out the other
credentials used from it, nothing locks a username out from other addresses, and credential stuffing from one
address is stopped."""

from __future__ import annotations

import hashlib
import smtplib
import time
from typing import Any

import pytest
import redis as redis_lib
from taifa_events import usage
from taifa_localstack import wait_until

from tests.integration.relay.support import Certs, Client, Credentials, auth

THROTTLED = (454, b"4.7.0 Too many authentication failures, closing connection")


def _fail_once(client: Client, username: str, source: str) -> tuple[int, bytes]:
    with client.tls(source=source) as smtp:
        return auth(smtp, "PLAIN", username, "stale-password")


def test_one_stale_credential_failing_from_an_address_does_not_lock_out_another_credential_from_it(
    make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    relay = make_relay()  # the defaults: 10 per (address, username), 200 per address
    client = Client(relay, certs)
    stale, other = credentials.create(), credentials.create()
    replies = [_fail_once(client, stale.username, "127.0.0.41")[0] for _ in range(20)]
    assert replies[:9] == [535] * 9 and set(replies[9:]) == {454}
    with client.tls(source="127.0.0.41") as smtp:
        assert auth(smtp, "PLAIN", other.username, other.password)[0] == 235
    with client.tls(source="127.0.0.42") as smtp:  # the stale credential's name is not locked out elsewhere
        assert auth(smtp, "LOGIN", stale.username, stale.password)[0] == 235


def test_the_per_address_and_username_threshold_answers_454_and_closes(
    make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    relay = make_relay(relay_max_auth_failures_per_address_username=3, relay_max_auth_failures_per_connection=100)
    client = Client(relay, certs)
    cred = credentials.create()
    with client.tls(source="127.0.0.43") as smtp:
        assert auth(smtp, "PLAIN", cred.username, "x")[0] == 535
        assert auth(smtp, "LOGIN", cred.username, "y")[0] == 535  # PLAIN then LOGIN: both count
        assert auth(smtp, "PLAIN", cred.username, "z") == THROTTLED
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.noop()
    with client.tls(source="127.0.0.43") as smtp:  # even the right password, until the window ends
        assert auth(smtp, "PLAIN", cred.username, cred.password) == THROTTLED
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.noop()


def test_many_usernames_failing_from_one_address_reach_the_per_address_threshold(
    make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    relay = make_relay(relay_max_auth_failures_per_address_username=100, relay_max_auth_failures_per_address=5)
    client = Client(relay, certs)
    valid = credentials.create()
    replies = [_fail_once(client, f"stuffing-{n}@victim.example", "127.0.0.44") for n in range(6)]
    assert [code for code, _ in replies[:4]] == [535] * 4
    assert replies[4:] == [THROTTLED, THROTTLED]
    with client.tls(source="127.0.0.44") as smtp:
        assert auth(smtp, "PLAIN", valid.username, valid.password) == THROTTLED
    with client.tls(source="127.0.0.45") as smtp:  # another address is not affected
        assert auth(smtp, "PLAIN", valid.username, valid.password)[0] == 235


def test_failure_counters_hold_no_username_in_plain_text_and_expire(
    make_relay: Any, certs: Certs, credentials: Credentials, rdb: redis_lib.Redis
) -> None:
    relay = make_relay(relay_auth_failure_window_seconds=60)
    client = Client(relay, certs)
    cred = credentials.create()
    _fail_once(client, cred.username, "127.0.0.46")
    keys = [key.decode() for key in rdb.scan_iter("taifa:relay:authfail:*")]
    digest = hashlib.sha256(cred.username.encode()).hexdigest()[:32]
    assert f"taifa:relay:authfail:user:127.0.0.46:{digest}" in keys
    assert "taifa:relay:authfail:addr:127.0.0.46" in keys
    assert not any(cred.username in key or cred.domain in key for key in keys)
    for key in keys:
        assert 0 < rdb.ttl(key) <= 60


def test_logins_refused_by_the_throttle_count_as_refused_throttled(
    make_relay: Any, certs: Certs, credentials: Credentials, rdb: redis_lib.Redis
) -> None:
    """docs/api.md, usage refusal reasons: `throttled` counts the logins refused after too many failures, also
    those this relay answers from its own marks without reading the cache."""
    relay = make_relay(relay_max_auth_failures_per_address_username=3, relay_max_auth_failures_per_connection=10)
    client = Client(relay, certs)
    cred = credentials.create()
    assert [_fail_once(client, cred.username, "127.0.0.44")[0] for _ in range(3)] == [535, 535, 454]
    for _ in range(3):
        with client.tls(source="127.0.0.44") as smtp:
            assert auth(smtp, "PLAIN", cred.username, cred.password) == THROTTLED
    with client.login(cred, source="127.0.0.45") as smtp:  # counted after the refusals, in the same buffer
        smtp.mail(f"app@{cred.domain}")
    key = usage.usage_key(str(cred.entry.credential_id), usage.window_start(time.time()))
    wait_until(lambda: rdb.hget(key, usage.FIELD_AUTH_SUCCESSES) == b"1", 10, "the login's usage flushed")
    assert rdb.hget(key, usage.refused_field("throttled")) == b"3"
    assert rdb.hget(key, usage.FIELD_AUTH_FAILURES) == b"3"

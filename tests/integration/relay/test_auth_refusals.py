"""Cases A7-A13 of docs/testing.md: what AUTH refuses and when. No mail without it, failure limits and throttling,
failures that look alike, Redis unreachable, revoked credentials and live sessions (A1-A6: test_tls_and_auth.py)."""

from __future__ import annotations

import random
import smtplib
import statistics
import time
from typing import Any

import pytest
from taifa_localstack import Redis, free_port, wait_until

from tests.integration.relay.support import Certs, Client, Credentials, Sink, auth, message, plain_auth_arg


def test_a7_no_mail_is_accepted_without_auth_over_many_attempts(client: Client, sink: Sink) -> None:
    before = sink.count()
    attempts = 0
    for port in ["submission", "smtps"] * 20:
        # Fewer errors per connection than the tarpit's soft limit, so the run stays fast.
        with client.tls(port) as smtp:
            for command in [
                "MAIL FROM:<a@victim.example>",
                "RCPT TO:<b@dest.example>",
                "DATA",
                "MAIL FROM:<> ",
                "MAIL FROM:<postmaster>",
            ]:
                assert smtp.docmd(command)[0] == 530
                attempts += 1
    assert attempts == 200
    assert sink.count() == before


def test_a8_connection_survives_two_failures_and_is_dropped_at_the_third(
    client: Client, credentials: Credentials
) -> None:
    cred = credentials.create()
    smtp = client.tls(source="127.0.0.21")
    assert auth(smtp, "PLAIN", cred.username, "x")[0] == 535
    assert auth(smtp, "PLAIN", cred.username, "y")[0] == 535
    assert smtp.noop()[0] == 250
    assert auth(smtp, "PLAIN", cred.username, "z")[0] == 454
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.noop()
    # A fresh connection starts with a fresh per-connection count.
    with client.tls(source="127.0.0.21") as again:
        assert auth(again, "PLAIN", cred.username, cred.password)[0] == 235


def test_a9_a10_address_throttling_spares_other_addresses(
    make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    relay = make_relay(relay_max_auth_failures_per_address_username=10)
    client = Client(relay, certs)
    cred = credentials.create()
    replies = []
    for _ in range(14):
        with client.tls(source="127.0.0.31") as smtp:
            replies.append(auth(smtp, "PLAIN", cred.username, "guess")[0])
    assert replies[:9] == [535] * 9
    assert set(replies[9:]) == {454}
    # The owner, elsewhere, is not locked out while the attack goes on.
    with client.tls(source="127.0.0.32") as owner:
        assert auth(owner, "LOGIN", cred.username, cred.password)[0] == 235
    # The attacking address is refused even with the right password until the window passes.
    with client.tls(source="127.0.0.31") as smtp:
        assert auth(smtp, "PLAIN", cred.username, cred.password)[0] == 454


def test_a11_unknown_user_wrong_secret_revoked_expired_retired_secret_and_outside_the_allowlist_look_alike(
    make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    """A11 (docs/testing.md): same reply, and medians of every kind within 5 % of each other: unknown user,
    wrong secret, deactivated credential, expired credential, retired secret (rotated with grace 0) and the right
    password from outside the allowlist. The kinds are interleaved in a fresh random order every round on one
    connection, so load from other processes on the box hits all alike; a measurement is repeated (at most 3
    times) only as a whole, and one of them must pass on its own. The 1,000-sample Welch test is in
    `make bench-relay`."""
    relay = make_relay(
        relay_max_auth_failures_per_connection=10_000,
        relay_max_auth_failures_per_address_username=10_000_000,
        relay_max_auth_failures_per_address=10_000_000,
        relay_error_soft_limit=10_000,
        relay_error_hard_limit=10_000,
    )
    client = Client(relay, certs)
    known = credentials.create()
    revoked = credentials.create()
    credentials.deactivate(revoked)
    expired, retired, outside = credentials.create(), credentials.create(), credentials.create()
    credentials.change(expired, expires_at=int(time.time()) - 1)
    retired_password = credentials.rotate(retired, grace_seconds=0)
    credentials.change(outside, allowed_cidrs=("192.0.2.0/24", "2001:db8::/48"))
    cases = {
        "unknown": (f"ghost-{known.username}", known.password),
        "wrong": (known.username, "wrong-" + known.password),
        "revoked": (revoked.username, revoked.password),
        "expired": (expired.username, expired.password),
        "retired": (retired.username, retired_password),
        "outside": (outside.username, outside.password),
    }
    arguments = {name: "PLAIN " + plain_auth_arg(user, password) for name, (user, password) in cases.items()}
    rng = random.Random(11)
    attempts: list[dict[str, float]] = []
    for _ in range(3):
        samples: dict[str, list[float]] = {name: [] for name in cases}
        texts = set()
        with client.tls() as smtp:
            for round_number in range(650):
                order = list(arguments)
                rng.shuffle(order)
                for name in order:
                    started = time.perf_counter()
                    code, text = smtp.docmd("AUTH", arguments[name])
                    elapsed = time.perf_counter() - started
                    texts.add((code, text))
                    if round_number >= 50:  # warm-up: connection pool, caches
                        samples[name].append(elapsed)
        assert texts == {(535, b"5.7.8 Authentication credentials invalid")}
        medians = {name: statistics.median(values) for name, values in samples.items()}
        attempts.append(medians)
        if max(medians.values()) <= 1.05 * min(medians.values()):
            return
    pytest.fail(f"medians differ by more than 5 % in each of 3 measurements: {attempts}")


def test_a12_auth_fails_closed_with_454_when_redis_is_down(make_relay: Any, certs: Certs, tmp_path: Any) -> None:
    own = Redis(tmp_path / "redis")
    own.start()
    try:
        relay = make_relay(redis_url=own.url)
        client = Client(relay, certs)
        with client.tls() as smtp:
            own.stop()
            assert auth(smtp, "PLAIN", "someone@x.example", "secret") == (
                454,
                b"4.7.0 Temporary authentication failure",
            )
            assert auth(smtp, "LOGIN", "someone@x.example", "secret")[0] == 454
    finally:
        own.stop()


def test_a12_unreachable_redis_from_the_start_is_454(make_relay: Any, certs: Certs) -> None:
    relay = make_relay(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with Client(relay, certs).tls("smtps") as smtp:
        assert auth(smtp, "PLAIN", "someone@x.example", "secret")[0] == 454


def test_a12_redis_lost_mid_session_refuses_the_next_mail_with_454(
    make_relay: Any, certs: Certs, tmp_path: Any
) -> None:
    import redis as redis_lib

    from tests.integration.relay.support import Credentials as Creds

    own = Redis(tmp_path / "redis")
    own.start()
    try:
        cred = Creds(redis_lib.Redis.from_url(own.url)).create()
        relay = make_relay(redis_url=own.url)
        with Client(relay, certs).login(cred) as smtp:
            own.stop()
            assert smtp.docmd(f"MAIL FROM:<a@{cred.domain}>") == (454, b"4.7.0 Temporary authentication failure")
    finally:
        own.stop()


def test_a13_revoked_credential_gets_535_at_once(client: Client, credentials: Credentials) -> None:
    cred = credentials.create()
    credentials.deactivate(cred)
    with client.tls() as smtp:
        assert auth(smtp, "PLAIN", cred.username, cred.password)[0] == 535


def test_a13_live_session_is_refused_at_next_mail_after_revocation(
    client: Client, credentials: Credentials, sink: Sink
) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    with client.login(cred) as smtp:
        assert smtp.sendmail(sender, ["a@dest.example"], message(sender)) == {}
        credentials.deactivate(cred, publish=False)  # even a missed channel message: MAIL re-reads the entry
        assert smtp.docmd(f"MAIL FROM:<{sender}>") == (535, b"5.7.8 Authentication credentials no longer valid")
        assert smtp.docmd(f"MAIL FROM:<{sender}>")[0] == 530


def test_a13_revocation_message_refuses_the_next_rcpt_of_an_open_transaction(
    client: Client, credentials: Credentials
) -> None:
    cred = credentials.create()
    with client.login(cred) as smtp:
        assert smtp.docmd(f"MAIL FROM:<app@{cred.domain}>")[0] == 250
        credentials.deactivate(cred)
        replies: list[int] = []

        def refused() -> bool:
            replies.append(smtp.docmd("RCPT TO:<a@dest.example>")[0])
            return replies[-1] == 535

        wait_until(refused, 5, "RCPT refused after revocation")
        assert smtp.docmd("DATA")[0] == 530


def test_a13_with_a_recheck_cache_the_revocation_message_still_refuses_the_next_mail_at_once(
    make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    relay = make_relay(relay_recheck_cache_seconds=30)
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    client = Client(relay, certs)
    with client.login(cred) as first, client.login(cred, "smtps") as second:
        assert first.sendmail(sender, ["a@dest.example"], message(sender)) == {}
        credentials.deactivate(cred)  # tombstone + message on the channel

        def refused() -> bool:
            code = second.docmd(f"MAIL FROM:<{sender}>")[0]
            if code == 250:
                second.rset()
            return code == 535

        wait_until(refused, 5, "MAIL refused after the revocation message")
        assert first.docmd(f"MAIL FROM:<{sender}>")[0] == 535


def test_a13_with_a_recheck_cache_a_missed_message_is_caught_when_the_cache_expires(
    make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    relay = make_relay(relay_recheck_cache_seconds=0.5)
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    with Client(relay, certs).login(cred) as smtp:
        assert smtp.sendmail(sender, ["a@dest.example"], message(sender)) == {}
        credentials.deactivate(cred, publish=False)
        started = time.monotonic()

        def refused() -> bool:
            code = smtp.docmd(f"MAIL FROM:<{sender}>")[0]
            if code == 250:
                smtp.rset()
            return code == 535

        wait_until(refused, 5, "MAIL refused once the cached re-check expired")
        assert time.monotonic() - started < 2

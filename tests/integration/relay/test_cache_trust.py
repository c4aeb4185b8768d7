"""When the auth cache cannot be trusted, and when Redis refuses the relay's writes: case A13 after a Redis
restart from an old snapshot (a revoked credential never logs in again), a flushed cache (valid users get 454 and
retry, not 535), and the Redis ACL the relay needs (a read-only user makes it loudly not ready)."""

from __future__ import annotations

import logging
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from taifa_events import usage
from taifa_events.auth_cache import EPOCH_KEY, WATERMARK_KEY, auth_key
from taifa_events.events import CredentialLimits
from taifa_localstack import Redis, wait_until
from taifa_localstack.authcache import write_entry

from tests.integration.relay.support import Certs, Client, Credentials, auth, message, metric

TEMPORARY = (454, b"4.7.0 Temporary authentication failure")
DEPLOY_README = Path(__file__).parents[3] / "deploy" / "README.md"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Redis]:
    """A Redis of this test's own (RDB file in its work directory, written only by an explicit SAVE)."""
    server = Redis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def _readyz(relay: Any) -> int:
    try:
        url = f"http://127.0.0.1:{relay.health_port}/readyz"
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_a13_revoked_credential_never_logs_in_from_an_old_snapshot_restored_after_its_revocation(
    make_relay: Any, certs: Certs, own_redis: Redis
) -> None:
    client = redis_lib.Redis.from_url(own_redis.url)
    writer = Credentials(client)
    revoked, other = writer.create(), writer.create()
    relay = make_relay(redis_url=own_redis.url)
    smtp_client = Client(relay, certs)
    client.save()  # the old snapshot: both credentials active, watermark 2
    writer.deactivate(revoked)  # tombstone at position 3, watermark raised to 3, revocation published
    with smtp_client.tls() as smtp:
        assert auth(smtp, "PLAIN", revoked.username, revoked.password)[0] == 535  # the relay has seen watermark 3
    assert relay.relay.parts.auth_cache.highest_watermark == 3
    live = smtp_client.login(other)
    try:
        own_redis.stop()
        own_redis.start()  # loads the old dump.rdb: the revoked credential is active there, watermark 2
        assert client.hget(auth_key(revoked.username), "active") == b"1"
        stale_before = metric("taifa_relay_auth_total", result="cache-stale")
        for _ in range(5):  # at once, and again: never 235
            with smtp_client.tls() as smtp:
                assert auth(smtp, "PLAIN", revoked.username, revoked.password) == TEMPORARY
        assert metric("taifa_relay_auth_total", result="cache-stale") >= stale_before + 4
        assert metric("taifa_relay_auth_cache_trusted") == 0
        with smtp_client.tls() as smtp:  # valid users are told to retry, not that their password is wrong
            assert auth(smtp, "PLAIN", other.username, other.password) == TEMPORARY
        assert live.docmd(f"MAIL FROM:<app@{other.domain}>") == TEMPORARY  # the MAIL re-check too
        # The projector repairs the cache: the tombstone again and a watermark as high as before.
        writer.deactivate(revoked, publish=False)
        with smtp_client.tls() as smtp:
            assert auth(smtp, "PLAIN", revoked.username, revoked.password)[0] == 535
        assert live.sendmail(f"app@{other.domain}", ["a@dest.example"], message(f"app@{other.domain}")) == {}
        assert metric("taifa_relay_auth_cache_trusted") == 1
    finally:
        live.close()


def test_a_relay_without_logins_still_refuses_a_snapshot_older_than_the_watermark_it_has_seen(
    make_relay: Any, certs: Certs, own_redis: Redis
) -> None:
    client = redis_lib.Redis.from_url(own_redis.url)
    writer = Credentials(client)
    revoked = writer.create()
    relay = make_relay(redis_url=own_redis.url)
    client.save()
    writer.deactivate(revoked, publish=False)  # watermark 2; this relay serves no login in between
    wait_until(lambda: relay.relay.parts.auth_cache.highest_watermark == 2, 10, "relay learnt the watermark")
    own_redis.stop()
    own_redis.start()
    with Client(relay, certs).tls() as smtp:
        assert auth(smtp, "PLAIN", revoked.username, revoked.password) == TEMPORARY


def test_after_a_flush_valid_users_get_454_until_the_cache_is_repaired(
    make_relay: Any, certs: Certs, own_redis: Redis
) -> None:
    client = redis_lib.Redis.from_url(own_redis.url)
    cred = Credentials(client).create()
    relay = make_relay(redis_url=own_redis.url)
    smtp_client = Client(relay, certs)
    with smtp_client.login(cred) as smtp:
        assert smtp.sendmail(f"app@{cred.domain}", ["a@dest.example"], message(f"app@{cred.domain}")) == {}
        watermark = int(client.get(WATERMARK_KEY) or 0)
        client.flushall()
        assert smtp.docmd(f"MAIL FROM:<app@{cred.domain}>") == TEMPORARY
    with smtp_client.tls() as smtp:
        assert auth(smtp, "PLAIN", cred.username, cred.password) == TEMPORARY  # never a permanent 535
        client.set(EPOCH_KEY, "rebuilding")  # a rebuild sets the epoch first and the watermark last
        assert auth(smtp, "PLAIN", cred.username, cred.password) == TEMPORARY
        write_entry(client, cred.username, cred.entry)
        client.set(WATERMARK_KEY, watermark - 1)  # lower than what the relay has seen: still not trusted
        assert auth(smtp, "PLAIN", cred.username, cred.password) == TEMPORARY
        client.set(WATERMARK_KEY, watermark)
        assert auth(smtp, "PLAIN", cred.username, cred.password)[0] == 235


def _documented_acl() -> list[str]:
    """The relay's `ACL SETUSER` line from deploy/README.md, so that the documented ACL is the tested one."""
    match = re.search(r"^ACL SETUSER taifa_relay .+$", DEPLOY_README.read_text(), re.MULTILINE)
    assert match, "deploy/README.md documents the relay's ACL SETUSER line"
    return match.group(0).split()


def test_the_documented_relay_acl_is_enough_to_authenticate_count_failures_and_limits_and_follow_revocations(
    make_relay: Any, certs: Certs, own_redis: Redis
) -> None:
    admin = redis_lib.Redis.from_url(own_redis.url)
    words = [">testpass" if word == ">PASSWORD" else word for word in _documented_acl()]
    admin.execute_command(*words)
    writer = Credentials(admin)
    cred = writer.create()
    relay = make_relay(redis_url=f"redis://taifa_relay:testpass@127.0.0.1:{own_redis.port}/0")
    wait_until(lambda: _readyz(relay) == 200, 10, "relay ready with the documented ACL")
    smtp_client = Client(relay, certs)
    with smtp_client.tls() as smtp:
        assert auth(smtp, "PLAIN", cred.username, "wrong")[0] == 535
    assert any(admin.scan_iter("taifa:relay:authfail:user:*"))
    with smtp_client.login(cred) as smtp:
        # The sending-limit script (EVALSHA, SCRIPT LOAD once) counts the minute at MAIL and the quota at RCPT.
        writer.change(cred, limits=CredentialLimits(messages_per_minute=10, messages_per_day=10))
        assert smtp.mail(f"app@{cred.domain}")[0] == 250
        assert smtp.rcpt("first@dest.example")[0] == 250
        assert any(admin.scan_iter("taifa:quota:*")) and any(admin.scan_iter("taifa:limit:*"))
        writer.deactivate(cred)
        wait_until(lambda: smtp.rcpt("a@dest.example")[0] == 535, 5, "revocation message received")
    # The usage batch script (EVAL, its applied marker) runs with the same user: the login is counted.
    window = usage.usage_key(str(cred.entry.credential_id), usage.window_start(time.time()))
    wait_until(lambda: admin.hget(window, usage.FIELD_AUTH_SUCCESSES) == b"1", 10, "the login's usage counted")
    # The relay's user can neither change the auth cache nor publish revocations.
    relay_user = redis_lib.Redis.from_url(f"redis://taifa_relay:testpass@127.0.0.1:{own_redis.port}/0")
    with pytest.raises(redis_lib.exceptions.NoPermissionError):
        relay_user.hset(auth_key(cred.username), "active", "1")
    with pytest.raises(redis_lib.exceptions.NoPermissionError):
        relay_user.publish("taifa:auth:revocations", "x")
    relay_user.close()


def test_a_redis_user_without_write_access_makes_the_relay_loudly_not_ready_and_auth_fail_closed(
    make_relay: Any, certs: Certs, own_redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="taifa.relay.cache")
    admin = redis_lib.Redis.from_url(own_redis.url)
    # What deploy/README.md used to ask for: read commands and SUBSCRIBE only.
    read_only = "ACL SETUSER readonly reset on >testpass ~taifa:* resetchannels &taifa:auth:revocations"
    admin.execute_command(*read_only.split(), "+@read", "+ping", "+select", "+multi", "+exec", "+subscribe")
    cred = Credentials(admin).create()
    refused_before = metric("taifa_relay_redis_writes_refused_total")
    relay = make_relay(redis_url=f"redis://readonly:testpass@127.0.0.1:{own_redis.port}/0")
    wait_until(lambda: metric("taifa_relay_redis_writes_refused_total") > refused_before, 10, "write refused")
    assert _readyz(relay) == 503
    assert "Redis refused a write" in caplog.text
    assert metric("taifa_relay_redis_writable") == 0
    smtp_client = Client(relay, certs)
    with smtp_client.tls() as smtp:
        # A failure that cannot be counted gets no verdict: throttling never silently stops.
        assert auth(smtp, "PLAIN", cred.username, "wrong") == TEMPORARY
        assert auth(smtp, "PLAIN", cred.username, cred.password)[0] == 235  # reading still works
    assert metric("taifa_relay_auth_total", result="write-refused") >= 1
    assert _readyz(relay) == 503

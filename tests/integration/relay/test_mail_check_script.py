"""MAIL's re-check and per-minute count in one script (issue 18), against a real Redis with the relay's ACL exactly as
deploy/README.md documents it: the script counts only while the entry is the one the session was judged on and the
cache is trusted, takes nothing over the limit, and can read the auth keys it gets in ARGV but never write them.
Without the script (an ACL that lacks EVALSHA) MAIL falls back to a re-read and a separate count. Then the relay
itself: MAIL's replies and counts with the script and without it agree."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis as redis_lib
from taifa_events import usage
from taifa_events.auth_cache import EPOCH_KEY, WATERMARK_KEY, AuthCacheEntry, auth_key
from taifa_events.events import CredentialLimits
from taifa_localstack import Redis
from taifa_localstack.authcache import SeededCredential, seed_credential, write_later_state
from taifa_relay.adapters.auth_cache import RedisAuthCacheReader
from taifa_relay.application.ports import CacheStale

from tests.integration.relay.support import Certs, Client, Credentials
from tests.integration.relay.test_cache_trust import _documented_acl


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[tuple[redis_lib.Redis, str]]:
    """A Redis of this test's own with the documented relay user: (admin client, the relay user's URL)."""
    server = Redis(tmp_path / "redis")
    server.start()
    admin = redis_lib.Redis.from_url(server.url)
    admin.execute_command(*[">testpass" if word == ">PASSWORD" else word for word in _documented_acl()])
    yield admin, f"redis://taifa_relay:testpass@127.0.0.1:{server.port}/0"
    admin.close()
    server.stop()


def _limited(admin: redis_lib.Redis, per_minute: int) -> tuple[SeededCredential, AuthCacheEntry]:
    seeded = seed_credential(admin)
    limits = CredentialLimits(messages_per_minute=per_minute)
    return seeded, write_later_state(admin, seeded.username, seeded.entry, limits=limits)


async def _judged(url: str, username: str) -> tuple[RedisAuthCacheReader, AuthCacheEntry]:
    """A reader as the relay has one, and the entry its AUTH of `username` judged."""
    reader = RedisAuthCacheReader(url, failure_window_seconds=60)
    judged = (await reader.lookup(username, "192.0.2.0")).entry
    assert judged is not None
    return reader, judged


def _minute_count(admin: redis_lib.Redis, entry: AuthCacheEntry, now: float) -> int:
    return int(admin.get(usage.minute_limit_key(entry.credential_id, usage.minute_start(now))) or 0)


async def test_the_script_counts_the_judged_entry_up_to_the_limit_with_the_documented_acl(
    acl_redis: tuple[redis_lib.Redis, str],
) -> None:
    admin, url = acl_redis
    seeded, _ = _limited(admin, 3)
    reader, judged = await _judged(url, seeded.username)
    try:
        now = time.time()
        credential = str(judged.credential_id)
        for n in range(1, 4):
            taken = await reader.recheck_and_take_minute(seeded.username, judged, credential, 3, now)
            assert taken is not None and taken.unchanged and taken.counted and taken.entry is judged
            assert _minute_count(admin, judged, now) == n
        over = await reader.recheck_and_take_minute(seeded.username, judged, credential, 3, now)
        assert over is not None and over.unchanged and not over.counted
        assert _minute_count(admin, judged, now) == 3  # over the limit: nothing taken
    finally:
        await reader.close()


async def test_sessions_of_one_username_each_count_in_one_trip(acl_redis: tuple[redis_lib.Redis, str]) -> None:
    """Each AUTH parses the entry anew: a session judged on an earlier parse of the same fields still counts in one
    script (load (a) of bench/relay: many connections of one credential)."""
    admin, url = acl_redis
    seeded, _ = _limited(admin, 3)
    reader, first = await _judged(url, seeded.username)
    try:
        second = (await reader.lookup(seeded.username, "192.0.2.1")).entry
        assert second is not None and second is not first and second == first
        now = time.time()
        for judged in (first, second):
            taken = await reader.recheck_and_take_minute(seeded.username, judged, str(judged.credential_id), 3, now)
            assert taken is not None and taken.unchanged and taken.counted
        assert _minute_count(admin, first, now) == 2
    finally:
        await reader.close()


async def test_a_changed_entry_or_an_untrusted_cache_counts_nothing(acl_redis: tuple[redis_lib.Redis, str]) -> None:
    admin, url = acl_redis
    seeded, entry = _limited(admin, 3)
    reader, judged = await _judged(url, seeded.username)
    try:
        now, credential = time.time(), str(entry.credential_id)
        # Suspended meanwhile and the notice lost: the script finds another entry, counts nothing, hands it back.
        suspended = write_later_state(admin, seeded.username, entry, status="suspended", notify=False)
        taken = await reader.recheck_and_take_minute(seeded.username, judged, credential, 3, now)
        assert taken is not None and not taken.unchanged and not taken.counted
        assert taken.entry == suspended
        assert _minute_count(admin, entry, now) == 0
        # The judged entry is no longer the one this reader last read: no script at all (the caller re-reads).
        assert await reader.recheck_and_take_minute(seeded.username, judged, credential, 3, now) is None
        assert taken.entry is not None
        # A flushed cache (epoch gone) and a watermark gone backwards: CacheStale, nothing counted.
        epoch = admin.get(EPOCH_KEY)
        admin.delete(EPOCH_KEY)
        with pytest.raises(CacheStale):
            await reader.recheck_and_take_minute(seeded.username, taken.entry, credential, 3, now)
        admin.set(EPOCH_KEY, epoch or b"epoch")
        admin.set(WATERMARK_KEY, reader.highest_watermark - 1)
        with pytest.raises(CacheStale):
            await reader.recheck_and_take_minute(seeded.username, taken.entry, credential, 3, now)
        assert _minute_count(admin, entry, now) == 0
    finally:
        await reader.close()


def test_the_documented_acl_lets_a_script_read_the_auth_keys_named_in_argv_but_never_write_them(
    acl_redis: tuple[redis_lib.Redis, str],
) -> None:
    admin, url = acl_redis
    seeded = seed_credential(admin)
    relay_user = redis_lib.Redis.from_url(url)
    try:
        read = "#!lua flags=no-cluster\nreturn redis.call('HGETALL', ARGV[1])"
        flat = relay_user.eval(read, 1, "taifa:limit:probe", auth_key(seeded.username))
        assert dict(zip(flat[::2], flat[1::2], strict=True))[b"domain"] == seeded.domain.encode()
        write = "#!lua flags=no-cluster\nreturn redis.call('HSET', ARGV[1], 'active', '1')"
        with pytest.raises(redis_lib.exceptions.ResponseError, match=r"can.t access at least one of the keys"):
            relay_user.eval(write, 1, "taifa:limit:probe", auth_key(seeded.username))
    finally:
        relay_user.close()


async def test_without_evalsha_in_the_acl_mail_falls_back_to_a_read_and_a_separate_count(
    acl_redis: tuple[redis_lib.Redis, str],
) -> None:
    admin, url = acl_redis
    admin.execute_command("ACL", "SETUSER", "taifa_relay", "-evalsha")
    seeded, entry = _limited(admin, 3)
    reader, judged = await _judged(url, seeded.username)
    try:
        now = time.time()
        assert await reader.recheck_and_take_minute(seeded.username, judged, str(entry.credential_id), 3, now) is None
        assert _minute_count(admin, entry, now) == 0
    finally:
        await reader.close()


def _mail_replies(relay: Any, certs: Certs, credentials: Credentials, rdb: redis_lib.Redis) -> list[int]:
    """A session's MAIL replies within and over a per-minute limit of 3, after a suspension and after a deactivation
    whose notices were lost, then the minute's count."""
    cred = credentials.create()
    credentials.change(cred, limits=CredentialLimits(messages_per_minute=3))
    codes: list[int] = []
    with Client(relay, certs).login(cred) as smtp:
        for _ in range(4):
            codes.append(smtp.mail(f"app@{cred.domain}")[0])
            smtp.rset()
        credentials.change(cred, notify=False, status="suspended")
        codes.append(smtp.mail(f"app@{cred.domain}")[0])
        smtp.rset()
        credentials.change(cred, notify=False, status="deactivated")
        codes.append(smtp.mail(f"app@{cred.domain}")[0])
    now = time.time()
    codes.append(int(rdb.get(usage.minute_limit_key(cred.entry.credential_id, usage.minute_start(now))) or 0))
    return codes


def test_mail_replies_and_counts_agree_with_and_without_the_script(
    make_relay: Any, certs: Certs, credentials: Credentials, rdb: redis_lib.Redis
) -> None:
    with_script, without = make_relay(), make_relay()
    reader = with_script.relay.parts.submission.mail_recheck
    assert reader is not None
    counted: list[bool] = []

    async def counting(*args: Any) -> Any:
        taken = await type(reader).recheck_and_take_minute(reader, *args)
        counted.append(taken is not None and taken.unchanged)
        return taken

    with_script.relay.parts.submission.mail_recheck = SimpleNamespace(recheck_and_take_minute=counting)
    without.relay.parts.submission.mail_recheck = None  # a re-read, then the count, as before the script
    replies = [_mail_replies(relay, certs, credentials, rdb) for relay in (with_script, without)]
    assert counted == [True, True, True, True, False]  # the script decided the first 4 MAILs, not the suspended one
    # 3 within the limit, 1 over it (451, nothing taken), suspended with the notice lost (451), then deactivated
    # (535, logged out); the minute counted 3.
    assert replies[0] == replies[1] == [250, 250, 250, 451, 451, 535, 3]

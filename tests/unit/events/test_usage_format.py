"""The usage format (taifa_events.usage): keys, windows, the hash -> record snapshot, the topic envelope."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from taifa_events import auth_cache, usage

CRED = uuid4()
ACCOUNT = uuid4()
SECRET = uuid4()
NOW = datetime(2026, 11, 28, 6, 40, tzinfo=UTC)


def test_windows_are_utc_hours_and_days_roll_at_midnight_utc() -> None:
    ts = datetime(2026, 11, 28, 23, 59, 59, tzinfo=UTC).timestamp()
    assert usage.window_start(ts) == int(datetime(2026, 11, 28, 23, tzinfo=UTC).timestamp())
    assert usage.utc_day(ts) == "20261128"
    assert usage.utc_day(ts + 1) == "20261129"
    assert usage.minute_start(ts) == int(ts) - 59


def test_keys_follow_the_shared_spec() -> None:
    assert usage.usage_key(CRED, 3600) == f"taifa:usage:{CRED}:3600"
    assert usage.minute_limit_key(CRED, 60) == f"taifa:limit:{CRED}:m:60"
    assert usage.day_limit_key(CRED, "20261128") == f"taifa:limit:{CRED}:d:20261128"
    assert usage.account_quota_key(ACCOUNT, "20261128") == f"taifa:quota:{ACCOUNT}:20261128"
    assert usage.parse_pending_member(usage.pending_member(CRED, 7200).encode()) == (CRED, 7200)
    assert usage.parse_pending_member("junk") is None


def test_unknown_or_missing_plan_gets_the_free_quota() -> None:
    assert usage.daily_quota("pro") == 100000
    assert usage.daily_quota(None) == 200
    assert usage.daily_quota("platinum") == 200


def test_threshold_crossing_is_seen_by_the_one_increment_that_crosses_it() -> None:
    assert usage.crossed_threshold(159, 160, 200) == 80
    assert usage.crossed_threshold(160, 161, 200) is None
    assert usage.crossed_threshold(199, 200, 200) == 100
    assert usage.crossed_threshold(150, 210, 200) == 100


def test_a_usage_hash_becomes_a_window_record_that_round_trips() -> None:
    mapping = {
        b"account_id": str(ACCOUNT).encode(),
        b"messages": b"3",
        b"recipients": b"5",
        b"bytes": b"1200",
        b"auth_successes": b"2",
        b"auth_failures": b"1",
        b"refused:policy": b"1",
        b"last_used_at": str(int(NOW.timestamp())).encode(),
        b"last_used_ip": b"192.0.2.7",
        b"last_secret_id": str(SECRET).encode(),
        f"secret_last_used:{SECRET}".encode(): str(int(NOW.timestamp())).encode(),
    }
    window = usage.window_from_hash(CRED, usage.window_start(NOW.timestamp()), mapping, NOW)
    assert window is not None
    assert (window.messages, window.recipients, window.bytes) == (3, 5, 1200)
    assert window.refused == {"policy": 1}
    assert window.last_used_at == NOW and window.last_used_ip == "192.0.2.7"
    assert window.secrets_last_used == {SECRET: NOW}
    assert window.window_start == datetime(2026, 11, 28, 6, tzinfo=UTC)
    assert usage.decode_usage_record(usage.encode_usage_record(window)) == window


def test_a_window_carries_its_hashs_generation_and_older_records_read_as_generation_empty() -> None:
    hour = usage.window_start(NOW.timestamp())
    base = {"account_id": str(ACCOUNT), "messages": "1"}
    window = usage.window_from_hash(CRED, hour, {**base, "generation": "0f3a.12"}, NOW)
    assert window is not None and window.generation == "0f3a.12"
    assert usage.decode_usage_record(usage.encode_usage_record(window)).generation == "0f3a.12"
    for damaged in ("x" * 65, "a b", "é"):  # not one a relay writes: the window still counts, as generation ""
        odd = usage.window_from_hash(CRED, hour, {**base, "generation": damaged}, NOW)
        assert odd is not None and odd.generation == ""
    older = usage.encode_usage_record(window).replace(b'"generation":"0f3a.12",', b"")
    assert b"generation" not in older and usage.decode_usage_record(older).generation == ""


def test_a_hash_that_names_no_account_is_attributed_by_the_caller_or_not_at_all() -> None:
    assert usage.window_from_hash(CRED, 0, {"messages": "1"}, NOW) is None
    window = usage.window_from_hash(CRED, 0, {"messages": "1"}, NOW, account_id=ACCOUNT)
    assert window is not None and window.account_id == ACCOUNT


def test_quota_records_are_told_apart_and_junk_is_refused() -> None:
    record = usage.QuotaReached(
        account_id=ACCOUNT, credential_id=CRED, day="20261128", percent=80, count=160, quota=200, at=NOW
    )
    assert usage.decode_usage_record(usage.encode_usage_record(record)) == record
    for junk in (None, b"{}", b"not json", b'{"type":"Other","data":{}}'):
        with pytest.raises(usage.InvalidUsageRecord):
            usage.decode_usage_record(junk)


def test_cache_entry_carries_the_plan_and_an_entry_without_one_reads_as_free() -> None:
    fields = {
        "credential_id": CRED,
        "account_id": ACCOUNT,
        "domain_id": uuid4(),
        "domain": "example.com",
        "secret_hash": "a" * 64,
        "hash_scheme": "sha256",
        "active": True,
        "position": 3,
    }
    entry = auth_cache.AuthCacheEntry.model_validate({**fields, "plan": "pro"})
    stored = entry.to_redis()
    assert stored["plan"] == "pro"
    parsed = auth_cache.AuthCacheEntry.from_redis(stored)
    assert parsed is not None and parsed.plan == "pro"
    del stored["plan"]
    older = auth_cache.AuthCacheEntry.from_redis(stored)
    assert older is not None and older.plan == "free"

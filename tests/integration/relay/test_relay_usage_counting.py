"""Usage counted by a real relay in a real Redis (taifa_events.usage's hash per credential and hour): messages,
recipients, bytes, AUTH successes and failures by reason (a known username only), refusals by reason, the
last-use fields and the pending set the projector's flusher reads."""

from __future__ import annotations

import time

import redis as redis_lib
from taifa_events import usage
from taifa_localstack import wait_until

from tests.integration.relay.support import Client, Credentials, auth, message


def _hash(rdb: redis_lib.Redis, credential_id: object) -> dict[str, str]:
    key = usage.usage_key(str(credential_id), usage.window_start(time.time()))
    return {k.decode(): v.decode() for k, v in rdb.hgetall(key).items()}


def test_usage_hash_counts_messages_auth_results_refusals_and_last_use(
    client: Client, credentials: Credentials, rdb: redis_lib.Redis
) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    body = message(sender)
    with client.tls() as smtp:
        assert auth(smtp, "PLAIN", cred.username, "wrong-password")[0] == 535
    with client.login(cred) as smtp:
        assert smtp.sendmail(sender, ["a@dest.example", "b@dest.example"], body) == {}
        assert smtp.mail("app@other.example")[0] == 553
    credentials.change(cred, allowed_cidrs=("198.51.100.0/24",))
    with client.tls() as smtp:
        assert auth(smtp, "PLAIN", cred.username, cred.password)[0] == 535
    credentials.change(cred, allowed_cidrs=(), expires_at=int(time.time()) - 10)
    with client.tls() as smtp:
        assert auth(smtp, "PLAIN", cred.username, cred.password)[0] == 535

    def counted() -> bool:
        fields = _hash(rdb, cred.entry.credential_id)
        return fields.get("auth_failures") == "3" and fields.get("messages") == "1"

    wait_until(counted, 10, "usage counted in Redis")
    fields = _hash(rdb, cred.entry.credential_id)
    assert fields["messages"] == "1" and fields["recipients"] == "2"
    assert int(fields["bytes"]) >= len(body)
    assert fields["auth_successes"] == "1"
    assert fields["refused:auth_secret"] == "1"
    assert fields["refused:auth_cidr"] == "1"
    assert fields["refused:auth_expired"] == "1"
    assert fields["refused:policy"] == "1"
    assert fields["last_used_ip"] == "127.0.0.1"
    assert abs(int(fields["last_used_at"]) - time.time()) < 60
    secret_id = fields["last_secret_id"]
    assert fields[f"secret_last_used:{secret_id}"] == fields["last_used_at"]
    assert fields["account_id"] == str(cred.entry.account_id)
    key = usage.usage_key(str(cred.entry.credential_id), usage.window_start(time.time()))
    assert 0 < rdb.ttl(key) <= usage.USAGE_TTL_SECONDS
    member = usage.pending_member(str(cred.entry.credential_id), usage.window_start(time.time()))
    assert rdb.zscore(usage.USAGE_PENDING_KEY, member) == usage.window_start(time.time())

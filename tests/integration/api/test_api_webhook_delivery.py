"""The webhook dispatcher's delivery loop against real PostgreSQL and a real HTTP receiver on 127.0.0.1 (issue 17):
signatures that `standardwebhooks` verifies, the same `webhook-id` across retries, a hanging endpoint that does not
delay another, both secrets after a rotation, DNS rebinding and redirects refused, the schedule spent ->
endpoint disabled with an event, redelivered records -> no duplicate deliveries."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable

import asyncpg
import pytest
import trustme
from api_support import running_api
from standardwebhooks import Webhook, WebhookVerificationError
from taifa_api.adapters.webhook_secrets import new_webhook_secret
from taifa_api.domain import webhook_delivery as rules
from taifa_api.settings import Settings
from webhook_support import SECRET_KEYS, create_endpoint, delivering, feed_event, receiver, wait_for


@pytest.fixture
def pool(db_pool: asyncpg.Pool) -> asyncpg.Pool:
    return db_pool


async def delivery_rows(pool: asyncpg.Pool, webhook_id: object) -> list[asyncpg.Record]:
    return list(await pool.fetch("SELECT * FROM webhook_deliveries WHERE webhook_id = $1", webhook_id))


async def attempts_of(pool: asyncpg.Pool, webhook_id: object) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            """SELECT a.* FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
               WHERE d.webhook_id = $1 ORDER BY a.attempt""",
            webhook_id,
        )
    )


async def test_delivery_is_signed_and_verifies_with_standardwebhooks(pool: asyncpg.Pool) -> None:
    async with receiver() as hook, delivering(pool) as dispatch:
        webhook_id, account_id, secret = await create_endpoint(pool, hook.url)
        event = feed_event(account_id)
        assert await dispatch.ingestor.ingest([event], {}) == 1
        await wait_for(lambda: _async(len(hook.requests) == 1))
        request = hook.requests[0]
        assert request.method == "POST" and request.path == "/hook"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["accept-encoding"] == "identity"  # the excerpt is the body as sent: never compressed
        assert request.headers["webhook-id"] == rules.message_id(webhook_id, event.event_id)
        body = Webhook(secret).verify(request.body, request.headers)
        assert body == event.payload and set(body) == {"type", "timestamp", "data"}
        with pytest.raises(WebhookVerificationError):
            Webhook(new_webhook_secret()).verify(request.body, request.headers)
        await wait_for(lambda: _status(pool, webhook_id, "succeeded"))
        [attempt] = await attempts_of(pool, webhook_id)
        assert attempt["status_code"] == 200 and attempt["response_excerpt"] == "ok" and attempt["error"] is None


async def test_receiver_down_for_a_while_gets_the_same_webhook_id_later(pool: asyncpg.Pool) -> None:
    async with receiver() as hook, delivering(pool, retry_scale=1e-4) as dispatch:
        port = hook.port
        await hook.stop()  # closed port: connections refused
        webhook_id, account_id, secret = await create_endpoint(pool, hook.url)
        event = feed_event(account_id)
        await dispatch.ingestor.ingest([event], {})
        await wait_for(lambda: _attempts_at_least(pool, webhook_id, 2))
        hook.port, hook.mode, hook.status = port, "answer", 503
        await hook.start()  # up, but answering 503
        await wait_for(lambda: _async(len(hook.requests) >= 1), timeout=15)
        hook.status = 200
        await wait_for(lambda: _status(pool, webhook_id, "succeeded"), timeout=15)
        ids = {r.headers["webhook-id"] for r in hook.requests}
        assert ids == {rules.message_id(webhook_id, event.event_id)}
        for request in hook.requests:
            Webhook(secret).verify(request.body, request.headers)
        attempts = await attempts_of(pool, webhook_id)
        assert attempts[0]["status_code"] is None and "connect" in attempts[0]["error"].lower()
        assert [a["status_code"] for a in attempts][-1] == 200 and 503 in [a["status_code"] for a in attempts]


async def test_a_hanging_endpoint_does_not_delay_another(pool: asyncpg.Pool) -> None:
    async with receiver(mode="hang") as slow, receiver() as fast, delivering(pool, request_timeout=10.0) as dispatch:
        _, account_id, _ = await create_endpoint(pool, slow.url)
        await create_endpoint(pool, fast.url, account_id=account_id)
        # The hanging endpoint has a backlog: none of it may hold the other endpoint's delivery back.
        started = time.monotonic()
        await dispatch.ingestor.ingest([feed_event(account_id) for _ in range(5)], {})
        await wait_for(lambda: _async(len(fast.requests) == 5), timeout=5)
        assert fast.requests[-1].at - started < 5.0  # the hanging attempt lasts 10 s
        assert len(slow.requests) == 1  # one in flight per endpoint, and it is still hanging


async def test_an_accounts_hanging_endpoints_do_not_delay_another_accounts_delivery(pool: asyncpg.Pool) -> None:
    # Ten endpoints of one account (the default maximum) that never answer: each holds a slot for the whole
    # request timeout, and every event of that account would fill all ten slots of this dispatcher again.
    async with receiver(mode="hang") as tarpit, receiver() as fast, delivering(pool, request_timeout=10.0) as dispatch:
        _, attacker, _ = await create_endpoint(pool, f"{tarpit.url}?n=0")
        for n in range(1, 10):
            await create_endpoint(pool, f"{tarpit.url}?n={n}", account_id=attacker)
        _, customer, _ = await create_endpoint(pool, fast.url)
        await dispatch.ingestor.ingest([feed_event(attacker)], {})
        await wait_for(lambda: _async(len(tarpit.requests) >= 2), timeout=5)
        started = time.monotonic()
        await dispatch.ingestor.ingest([feed_event(customer)], {})
        await wait_for(lambda: _async(len(fast.requests) == 1), timeout=5)
        assert fast.requests[0].at - started < 5.0  # a hanging attempt lasts 10 s
        assert len(tarpit.requests) == 2  # the account's share of the slots for endpoints not proven


async def test_after_a_rotation_both_secrets_sign(pool: asyncpg.Pool) -> None:
    async with receiver() as hook, delivering(pool) as dispatch:
        old_secret = new_webhook_secret()
        webhook_id, account_id, new_secret = await create_endpoint(pool, hook.url, previous_secret=old_secret)
        await dispatch.ingestor.ingest([feed_event(account_id)], {})
        await wait_for(lambda: _async(len(hook.requests) == 1))
        request = hook.requests[0]
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        Webhook(new_secret).verify(request.body, request.headers)
        Webhook(old_secret).verify(request.body, request.headers)
        # Once the 24 h are over only the new secret signs.
        await pool.execute(
            "UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 s' WHERE id = $1", webhook_id
        )
        await dispatch.ingestor.ingest([feed_event(account_id)], {})
        await wait_for(lambda: _async(len(hook.requests) == 2))
        later = hook.requests[1]
        assert len(later.headers["webhook-signature"].split(" ")) == 1
        Webhook(new_secret).verify(later.body, later.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(old_secret).verify(later.body, later.headers)


async def test_a_host_that_now_resolves_to_a_forbidden_address_is_refused(pool: asyncpg.Pool) -> None:
    """DNS rebinding: the name passed at creation, now it points at the metadata service (refused even in dev);
    the same name under the production setting pointing at loopback is refused too. Nothing reaches the receiver."""
    names = {"hooks.customer.test": "127.0.0.1"}
    async with receiver() as hook, delivering(pool, names=names) as dispatch:
        url = f"http://hooks.customer.test:{hook.port}/hook"
        webhook_id, account_id, _ = await create_endpoint(pool, url)
        await dispatch.ingestor.ingest([feed_event(account_id)], {})
        await wait_for(lambda: _async(len(hook.requests) == 1))  # the name resolves to loopback: allowed in dev
        assert hook.requests[0].headers["host"] == f"hooks.customer.test:{hook.port}"
        names["hooks.customer.test"] = "169.254.169.254"
        await dispatch.ingestor.ingest([feed_event(account_id)], {})
        await wait_for(lambda: _attempts_at_least(pool, webhook_id, 2))
        attempts = await attempts_of(pool, webhook_id)
        refused = [a for a in attempts if a["status_code"] is None]
        assert refused and "metadata" in refused[0]["error"] and len(hook.requests) == 1
    names = {"hooks.customer.test": "127.0.0.1"}
    async with receiver() as hook, delivering(pool, names=names, allow_http=False) as dispatch:
        webhook_id, account_id, _ = await create_endpoint(pool, f"https://hooks.customer.test:{hook.port}/hook")
        await dispatch.ingestor.ingest([feed_event(account_id)], {})
        await wait_for(lambda: _attempts_at_least(pool, webhook_id, 1))
        [first, *_] = await attempts_of(pool, webhook_id)
        assert first["status_code"] is None and "loopback" in first["error"] and hook.requests == []


async def test_redirects_are_not_followed(pool: asyncpg.Pool) -> None:
    async with receiver() as target, receiver(status=302) as hook, delivering(pool, retry_scale=1.0) as dispatch:
        hook.extra_headers = {"Location": target.url}
        webhook_id, account_id, _ = await create_endpoint(pool, hook.url)
        await dispatch.ingestor.ingest([feed_event(account_id)], {})
        await wait_for(lambda: _attempts_at_least(pool, webhook_id, 1))
        [attempt] = await attempts_of(pool, webhook_id)
        [delivery] = await delivery_rows(pool, webhook_id)
        assert attempt["status_code"] == 302 and attempt["error"] == "HTTP 302"
        assert delivery["status"] == "pending" and delivery["attempts"] == 1 and delivery["next_attempt_at"] is not None
        assert target.requests == []


async def test_spent_schedule_fails_the_delivery_and_disables_the_endpoint(pool: asyncpg.Pool) -> None:
    async with receiver(status=500, body=b"x" * 1000) as hook, delivering(pool, retry_scale=1e-5) as dispatch:
        webhook_id, account_id, _ = await create_endpoint(pool, hook.url)
        await dispatch.ingestor.ingest([feed_event(account_id)], {})
        await wait_for(lambda: _status(pool, webhook_id, "failed"), timeout=20)
        attempts = await attempts_of(pool, webhook_id)
        assert len(attempts) == rules.MAX_ATTEMPTS and len(hook.requests) == rules.MAX_ATTEMPTS
        assert all(a["status_code"] == 500 and len(a["response_excerpt"]) == rules.EXCERPT_CHARS for a in attempts)
        endpoint = await pool.fetchrow("SELECT * FROM webhook_endpoints WHERE id = $1", webhook_id)
        assert endpoint["status"] == "disabled" and endpoint["disabled_reason"] == rules.DISABLED_REASON
        events = await pool.fetch(
            "SELECT data, metadata FROM event_store WHERE event_type = 'WebhookEndpointDisabled' AND stream_id = $1",
            webhook_id,
        )
        assert len(events) == 1
        data, metadata = (_json(events[0][column]) for column in ("data", "metadata"))
        assert data["account_id"] == str(account_id) and data["reason"] == rules.DISABLED_REASON
        assert metadata["actor"] == {"type": "system", "id": "taifa-webhooks"}  # the audit feed's actor
        # A disabled endpoint takes no new deliveries.
        assert await dispatch.ingestor.ingest([feed_event(account_id)], {}) == 0


async def test_one_delivery_the_endpoint_keeps_refusing_fails_alone_and_the_endpoint_stays_enabled(
    pool: asyncpg.Pool,
) -> None:
    # A receiver that answers 400 to one payload (it cannot parse it) and 2xx to everything else is not down: its
    # other events keep coming. Disabling it failed its pending deliveries and dropped every later event.
    async with receiver(refuse=b"smtp_credential.suspended") as hook, delivering(pool, retry_scale=1e-5) as dispatch:
        webhook_id, account_id, _ = await create_endpoint(pool, hook.url)
        await dispatch.ingestor.ingest([feed_event(account_id, "smtp_credential.suspended")], {})
        await dispatch.ingestor.ingest([feed_event(account_id)], {})
        await wait_for(lambda: _count(pool, webhook_id, "failed", 1), timeout=20)
        endpoint = await pool.fetchrow("SELECT status FROM webhook_endpoints WHERE id = $1", webhook_id)
        assert endpoint["status"] == "enabled"
        disabled = await pool.fetchval(
            "SELECT count(*) FROM event_store WHERE event_type = 'WebhookEndpointDisabled' AND stream_id = $1",
            webhook_id,
        )
        assert disabled == 0
        assert await dispatch.ingestor.ingest([feed_event(account_id)], {}) == 1  # still takes new deliveries
        await wait_for(lambda: _count(pool, webhook_id, "succeeded", 2), timeout=10)
        statuses = {(r["event_type"], r["status"]) for r in await delivery_rows(pool, webhook_id)}
        assert statuses == {("smtp_credential.suspended", "failed"), ("smtp_credential.deactivated", "succeeded")}


async def test_an_older_delivery_that_succeeds_after_the_failed_one_was_created_keeps_the_endpoint_enabled(
    pool: asyncpg.Pool,
) -> None:
    # A (created first) waits on its retries while the receiver is down; B (created next) is a payload the
    # receiver refuses. The receiver comes back and takes A's retry: it delivered after B was created.
    async with (
        receiver(status=500, refuse=b"smtp_credential.suspended") as hook,
        delivering(pool, retry_scale=2e-5) as dispatch,
    ):
        webhook_id, account_id, _ = await create_endpoint(pool, hook.url)
        await dispatch.ingestor.ingest([feed_event(account_id)], {})
        await wait_for(lambda: _async(len(hook.requests) >= 2), timeout=5)
        await dispatch.ingestor.ingest([feed_event(account_id, "smtp_credential.suspended")], {})
        hook.status = 200
        await wait_for(lambda: _count(pool, webhook_id, "failed", 1), timeout=40)
        older, failed = await pool.fetch(
            "SELECT status, created_at, last_attempt_at FROM webhook_deliveries WHERE webhook_id = $1 "
            "ORDER BY created_at",
            webhook_id,
        )
        assert older["status"] == "succeeded" and older["last_attempt_at"] > failed["created_at"]
        assert failed["status"] == "failed"
        assert await pool.fetchval("SELECT status FROM webhook_endpoints WHERE id = $1", webhook_id) == "enabled"


async def test_records_read_twice_create_no_duplicate_deliveries(pool: asyncpg.Pool) -> None:
    """A crash after the deliveries' transaction but before Kafka heard of the offsets: the records come again."""
    async with receiver(status=500) as hook, delivering(pool, retry_scale=1.0) as dispatch:
        webhook_id, account_id, _ = await create_endpoint(pool, hook.url)
        events = [feed_event(account_id) for _ in range(3)]
        offsets = {("taifa.test-topic", 0): 3}
        assert await dispatch.store.record([], offsets) == 0
        assert await dispatch.ingestor.ingest(events, offsets) == 3
        assert await dispatch.ingestor.ingest(events, offsets) == 0
        assert await dispatch.ingestor.ingest(events[1:], {("taifa.test-topic", 0): 3}) == 0
        assert len(await delivery_rows(pool, webhook_id)) == 3
        assert await dispatch.store.load_offsets([("taifa.test-topic", 0), ("taifa.test-topic", 1)]) == {
            ("taifa.test-topic", 0): 3
        }


def _json(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else json.loads(str(value))


async def _async(value: object) -> object:
    return value


async def _status(pool: asyncpg.Pool, webhook_id: object, status: str) -> bool:
    rows = await delivery_rows(pool, webhook_id)
    return bool(rows) and all(r["status"] == status for r in rows)


async def _count(pool: asyncpg.Pool, webhook_id: object, status: str, at_least: int) -> bool:
    return sum(r["status"] == status for r in await delivery_rows(pool, webhook_id)) >= at_least


async def _attempts_at_least(pool: asyncpg.Pool, webhook_id: object, count: int) -> bool:
    return len(await attempts_of(pool, webhook_id)) >= count


async def test_https_goes_to_the_checked_address_with_the_host_name_as_sni_and_certificate_name(
    pool: asyncpg.Pool,
) -> None:
    """The connection is made to the IP the check passed, yet TLS is the URL host's: SNI and certificate name. The
    receiver keeps connections alive: a connection verified for one name is never reused for another name."""
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.customer.test").configure_cert(server_tls)
    names_seen: list[str | None] = []
    server_tls.sni_callback = lambda _sock, name, _ctx: names_seen.append(name)  # type: ignore[assignment,misc]
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    names = {"hooks.customer.test": "127.0.0.1", "other.customer.test": "127.0.0.1"}
    async with receiver(tls=server_tls) as hook, delivering(pool, names=names, verify=client_tls) as dispatch:
        webhook_id, account_id, secret = await create_endpoint(pool, f"https://hooks.customer.test:{hook.port}/hook")
        await dispatch.ingestor.ingest([feed_event(account_id)], {})
        await wait_for(lambda: _status(pool, webhook_id, "succeeded"))
        [request] = hook.requests
        assert request.headers["host"] == f"hooks.customer.test:{hook.port}" and names_seen == ["hooks.customer.test"]
        Webhook(secret).verify(request.body, request.headers)
        # The same address under a name its certificate does not cover: the handshake fails, nothing is sent.
        other_id, other_account, _ = await create_endpoint(pool, f"https://other.customer.test:{hook.port}/hook")
        await dispatch.ingestor.ingest([feed_event(other_account)], {})
        await wait_for(lambda: _attempts_at_least(pool, other_id, 1))
        [attempt, *_] = await attempts_of(pool, other_id)
        assert attempt["status_code"] is None and "certificate" in attempt["error"].lower()
        assert len(hook.requests) == 1


async def test_a_dispatcher_that_dies_mid_attempt_leaves_the_delivery_to_be_sent_again_with_the_same_id(
    pool: asyncpg.Pool,
) -> None:
    """At least once: a claim whose dispatcher never finishes (killed mid-attempt) comes due when its lease ends."""
    async with receiver() as hook:
        webhook_id, account_id, secret = await create_endpoint(pool, hook.url)
        event = feed_event(account_id)
        async with delivering(pool) as dead:
            dead.loop.concurrency = 0  # this one only takes the delivery, and then "dies" holding it
            await dead.ingestor.ingest([event], {})
            claimed = await dead.store.claim_next_of(webhook_id, lease_seconds=1.0)
        assert claimed is not None and claimed.message_id == rules.message_id(webhook_id, event.event_id)
        assert hook.requests == []
        async with delivering(pool):
            await wait_for(lambda: _status(pool, webhook_id, "succeeded"), timeout=10)
        [request] = hook.requests
        assert request.headers["webhook-id"] == claimed.message_id
        Webhook(secret).verify(request.body, request.headers)


async def test_a_webhook_created_and_rotated_through_the_api_signs_with_both_secrets(
    pool: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    """The API's POST /v1/webhooks and rotate-secret, then the dispatcher: the two stored secrets both sign."""
    settings = make_settings(webhook_secret_keys=SECRET_KEYS, webhook_allow_http=True)
    async with receiver() as hook, running_api(settings) as api, delivering(pool) as dispatch:
        tenant = await api.tenant()
        created = await api.client.post("/v1/webhooks", json={"url": hook.url, "events": ["*"]}, headers=tenant.headers)
        assert created.status_code == 201, created.text
        rotated = await api.client.post(f"/v1/webhooks/{created.json()['id']}/rotate-secret", headers=tenant.headers)
        assert rotated.status_code == 201, rotated.text
        old_secret, new_secret = created.json()["secret"], rotated.json()["secret"]
        assert old_secret != new_secret
        await dispatch.ingestor.ingest([feed_event(tenant.account_id)], {})
        await wait_for(lambda: _async(len(hook.requests) == 1))
        [request] = hook.requests
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        Webhook(new_secret).verify(request.body, request.headers)
        Webhook(old_secret).verify(request.body, request.headers)


async def test_a_disabled_endpoints_old_pending_rows_never_crowd_out_enabled_endpoints(pool: asyncpg.Pool) -> None:
    async with receiver() as hook, delivering(pool) as dispatch:
        dispatch.loop.concurrency = 0  # claims by hand below
        disabled_id, disabled_account, _ = await create_endpoint(pool, hook.url)
        await dispatch.ingestor.ingest([feed_event(disabled_account) for _ in range(3)], {})
        await pool.execute("UPDATE webhook_endpoints SET status = 'disabled' WHERE id = $1", disabled_id)
        enabled_id, enabled_account, _ = await create_endpoint(pool, hook.url)
        await dispatch.ingestor.ingest([feed_event(enabled_account)], {})
        await pool.execute(  # what earlier tests of this module left pending is not due during this one
            """UPDATE webhook_deliveries SET next_attempt_at = now() + interval '1 day'
               WHERE status = 'pending' AND webhook_id <> ALL($1::uuid[])""",
            [disabled_id, enabled_id],
        )
        claimed = await dispatch.store.claim_due(1, [], lease_seconds=30)
        assert [c.webhook_id for c in claimed] == [enabled_id]

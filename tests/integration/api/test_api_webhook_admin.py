"""`taifa-admin webhook` against the real app's PostgreSQL: `enable` turns a disabled endpoint back on (JSON result,
idempotent, unknown id exit 1), `reencrypt` moves every stored signing secret to the key ring's first key."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid

import pytest
from api_support import running_api, venv_bin
from taifa_api.adapters.webhook_secrets import WebhookSecretBox, generate_key_ring_entry

KEYS = generate_key_ring_entry("test-1")


@pytest.fixture
async def hooks(make_settings):
    async with running_api(make_settings(webhook_secret_keys=KEYS)) as api:
        yield api


async def _create(api, tenant) -> dict:
    response = await api.client.post(
        "/v1/webhooks", json={"url": "https://93.184.215.14/taifa/hook", "events": ["*"]}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def _stored(api, webhook_id: str):
    return await api.pool.fetchrow("SELECT * FROM webhook_endpoints WHERE id = $1", uuid.UUID(webhook_id))


def _admin(database_url: str, keys: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TAIFA_DATABASE_URL": database_url, "TAIFA_WEBHOOK_SECRET_KEYS": keys}
    return subprocess.run(
        [venv_bin("taifa-admin"), "webhook", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def test_admin_enables_a_disabled_endpoint(hooks) -> None:
    tenant = await hooks.tenant()
    created = await _create(hooks, tenant)
    await hooks.pool.execute(
        "UPDATE webhook_endpoints SET status = 'disabled', disabled_at = now(), disabled_reason = 'failing' "
        "WHERE id = $1",
        uuid.UUID(created["id"]),
    )
    shown = (await hooks.client.get(f"/v1/webhooks/{created['id']}", headers=tenant.headers)).json()
    assert (shown["status"], shown["disabled_reason"]) == ("disabled", "failing") and shown["disabled_at"]
    db = hooks.settings.database_url
    done = await asyncio.to_thread(_admin, db, KEYS, "enable", "--id", created["id"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"webhook_id": created["id"], "status": "enabled", "changed": True}
    again = await asyncio.to_thread(_admin, db, KEYS, "enable", "--id", created["id"])
    assert json.loads(again.stdout)["changed"] is False
    shown = (await hooks.client.get(f"/v1/webhooks/{created['id']}", headers=tenant.headers)).json()
    assert (shown["status"], shown["disabled_at"], shown["disabled_reason"]) == ("enabled", None, None)
    unknown = await asyncio.to_thread(_admin, db, KEYS, "enable", "--id", str(uuid.uuid4()))
    assert unknown.returncode == 1 and json.loads(unknown.stderr)["error"]["code"] == "not_found"


async def test_admin_reencrypts_secrets_under_the_new_first_key(hooks) -> None:
    tenant = await hooks.tenant()
    created = await _create(hooks, tenant)
    rotated = (await hooks.client.post(f"/v1/webhooks/{created['id']}/rotate-secret", headers=tenant.headers)).json()
    new_keys = f"{generate_key_ring_entry('test-2')},{KEYS}"
    db = hooks.settings.database_url
    done = await asyncio.to_thread(_admin, db, new_keys, "reencrypt")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["key_id"] == "test-2" and result["reencrypted"] >= 1
    row = await _stored(hooks, created["id"])
    only_new = WebhookSecretBox.parse(new_keys.split(",")[0])
    assert only_new.decrypt(row["secret_ciphertext"], row["id"]) == rotated["secret"]
    assert only_new.decrypt(row["previous_secret_ciphertext"], row["id"]) == created["secret"]
    assert json.loads((await asyncio.to_thread(_admin, db, new_keys, "reencrypt")).stdout)["reencrypted"] == 0
    missing = await asyncio.to_thread(_admin, db, generate_key_ring_entry("test-3"), "reencrypt")
    assert missing.returncode == 1 and "not configured" in json.loads(missing.stderr)["error"]["message"]

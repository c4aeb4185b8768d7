"""Commands that take no parameters (verify a domain, resume a credential, rotate a webhook's secret, and every
DELETE) accept no body or `{}`, and refuse any field with `422 validation_error` instead of ignoring it (CONTRACT:
unknown fields are rejected, never silently dropped). The refusal changes nothing: no event, no new secret."""

from __future__ import annotations

import pytest
from api_support import event_rows, running_api
from taifa_api.adapters.webhook_secrets import generate_key_ring_entry

KEYS = generate_key_ring_entry("test-1")


@pytest.fixture
async def api(make_settings):
    async with running_api(make_settings(webhook_secret_keys=KEYS)) as running:
        yield running


def _refused(response) -> None:
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize("body", [{"status": "active"}, {"force": True}, [], "resume"])
async def test_resume_refuses_any_body_but_an_empty_object_and_appends_nothing(api, body) -> None:
    tenant = await api.tenant()
    domain = await api.verified_domain(tenant)
    created = (await api.credential(tenant, domain["id"])).json()
    url = f"/v1/smtp/credentials/{created['id']}"
    assert (await api.client.post(f"{url}/suspend", headers=tenant.headers)).status_code == 200
    events = len(await event_rows(api.settings.database_url))
    _refused(await api.client.post(f"{url}/resume", json=body, headers=tenant.headers))
    assert len(await event_rows(api.settings.database_url)) == events
    resumed = await api.client.post(f"{url}/resume", json={}, headers=tenant.headers)
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    assert len(await event_rows(api.settings.database_url)) == events + 1


async def test_verifying_a_domain_refuses_a_body_with_fields(api) -> None:
    tenant = await api.tenant()
    domain = await api.domain(tenant)
    url = f"/v1/domains/{domain['id']}/verify"
    events = len(await event_rows(api.settings.database_url))
    _refused(await api.client.post(url, json={"force": True}, headers=tenant.headers))
    assert len(await event_rows(api.settings.database_url)) == events
    answered = await api.client.post(url, json={}, headers=tenant.headers)
    assert answered.status_code == 200 and answered.json()["id"] == domain["id"]


async def test_rotating_a_webhook_secret_refuses_a_body_and_keeps_the_secret(api) -> None:
    tenant = await api.tenant()
    created = await api.client.post(
        "/v1/webhooks", json={"url": "https://93.184.215.14/hook", "events": ["*"]}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    url = f"/v1/webhooks/{created.json()['id']}/rotate-secret"
    events = len(await event_rows(api.settings.database_url))
    _refused(await api.client.post(url, json={"secret": "whsec_mine"}, headers=tenant.headers))
    assert len(await event_rows(api.settings.database_url)) == events
    assert (await api.client.get(f"/v1/webhooks/{created.json()['id']}", headers=tenant.headers)).json()[
        "previous_secret_expires_at"
    ] is None
    rotated = await api.client.post(url, headers=tenant.headers)
    assert rotated.status_code == 201 and rotated.json()["secret"] != created.json()["secret"]


async def test_every_delete_refuses_a_body_with_fields_and_deletes_nothing(api) -> None:
    tenant = await api.tenant()
    domain = await api.verified_domain(tenant)
    created = (await api.credential(tenant, domain["id"])).json()
    credential = f"/v1/smtp/credentials/{created['id']}"
    rotated = await api.client.post(f"{credential}/rotate", json={"grace_period_seconds": 3600}, headers=tenant.headers)
    assert rotated.status_code == 201, rotated.text
    previous = rotated.json()["secrets"][1]["id"]
    hook = await api.client.post(
        "/v1/webhooks", json={"url": "https://93.184.215.14/hook", "events": ["*"]}, headers=tenant.headers
    )
    assert hook.status_code == 201, hook.text
    urls = [
        f"{credential}/secrets/{previous}",
        f"/v1/webhooks/{hook.json()['id']}",
        credential,
        f"/v1/domains/{domain['id']}",
    ]
    events = len(await event_rows(api.settings.database_url))
    for url in urls:
        for body in ({"purge": True}, [], "not json"):
            content = body if isinstance(body, str) else None
            sent = await api.client.request(
                "DELETE",
                url,
                headers=tenant.headers | {"content-type": "application/json"},
                content=content,
                json=None if content is not None else body,
            )
            _refused(sent)
    assert len(await event_rows(api.settings.database_url)) == events
    for url in urls:  # no body, or `{}`: deleted
        deleted = await api.client.request("DELETE", url, headers=tenant.headers, json={} if "domains" in url else None)
        assert deleted.status_code == 204, (url, deleted.text)
    assert len(await event_rows(api.settings.database_url)) > events

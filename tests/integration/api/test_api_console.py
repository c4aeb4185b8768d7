"""The console (docs/console.md) on the real API, PostgreSQL, Redis, broker and projector: signing out ends the
session for every copy of the cookie (TESTING D8), another account's ids are a 404 like a random id on every page
and action, and a form submitted as the page rendered it changes only what the customer changed."""

from __future__ import annotations

import asyncio
import html
import re
import time
import uuid

import jwt
from taifa_api.entrypoints import session_tokens

CSRF = "console-test-csrf-token"


def cookies(token: str) -> dict[str, str]:
    return {"Cookie": f"taifa_session={token}; taifa_csrf={CSRF}"}


async def page_with(api, path: str, token: str, needle: str) -> str:
    """The page once it shows `needle` (the console reads the read model, which follows the API's commit)."""
    deadline = time.monotonic() + 30
    while True:
        response = await api.client.get(path, headers=cookies(token))
        if needle in response.text:
            return response.text
        assert time.monotonic() < deadline, (response.status_code, response.text[:1000])
        await asyncio.sleep(0.1)


def form_fields(page: str, action: str) -> dict[str, str]:
    """What a browser submits for the form posting to `action`, untouched: its inputs' and textareas' values."""
    form = re.search(rf'<form[^>]*action="{re.escape(action)}"[^>]*>(.*?)</form>', page, re.S)
    assert form is not None, action
    fields = {
        name: html.unescape(value)
        for name, value in re.findall(r'<input[^>]*\bname="([^"]+)"[^>]*\bvalue="([^"]*)"', form.group(1))
    }
    for name, value in re.findall(r'<textarea[^>]*\bname="([^"]+)"[^>]*>(.*?)</textarea>', form.group(1), re.S):
        fields[name] = html.unescape(value)
    return fields


async def test_d8_signing_out_refuses_the_same_cookie_from_the_next_request(live) -> None:
    tenant = await live.tenant()
    token = session_tokens.mint_session(live.settings, tenant.account_id).token
    assert (await live.client.get("/console/", headers=cookies(token))).status_code == 200
    out = await live.client.post("/console/sign-out", data={"csrf_token": CSRF}, headers=cookies(token))
    assert out.status_code == 200
    assert any(c.startswith('taifa_session=""') for c in out.headers.get_list("set-cookie"))
    # A copy of the cookie (a shared computer, a proxy log) is refused too, by the console and by the API.
    assert (await live.client.get("/console/", headers=cookies(token))).status_code == 401
    assert (await live.client.get("/v1/domains", headers=cookies(token))).status_code == 401
    # Another session of the same account is still good.
    other = session_tokens.mint_session(live.settings, tenant.account_id).token
    assert (await live.client.get("/v1/domains", headers=cookies(other))).status_code == 200


async def test_signing_out_a_session_without_a_jti_clears_the_cookies(live) -> None:
    # Such a token cannot be revoked one by one (docs/console.md): sign-out still answers and clears the cookies.
    tenant = await live.tenant()
    claims = {"account_id": str(tenant.account_id), "iat": int(time.time()), "exp": int(time.time()) + 600}
    token = jwt.encode(claims, live.settings.api_jwt_secret.get_secret_value(), algorithm="HS256")
    out = await live.client.post("/console/sign-out", data={"csrf_token": CSRF}, headers=cookies(token))
    assert out.status_code == 200
    assert any(c.startswith('taifa_session=""') for c in out.headers.get_list("set-cookie"))


async def test_a_session_whose_jti_could_not_be_revoked_is_refused(live) -> None:
    tenant = await live.tenant()
    claims = {"account_id": str(tenant.account_id), "exp": int(time.time()) + 600, "jti": "line\nbreak"}
    token = jwt.encode(claims, live.settings.api_jwt_secret.get_secret_value(), algorithm="HS256")
    assert (await live.client.get("/v1/domains", headers=cookies(token))).status_code == 401


async def test_another_accounts_ids_are_a_404_like_a_random_id_on_every_page_and_action(live) -> None:
    owner, other = await live.tenant(), await live.tenant()
    domain = await live.verified_domain(owner)
    created = await live.credential(owner, domain["id"])
    assert created.status_code == 201, created.text
    credential = created.json()
    token = session_tokens.mint_session(live.settings, other.account_id).token
    random_id = str(uuid.uuid4())
    attempts = [
        ("GET", "/console/domains/{}", domain["id"], {}),
        ("GET", "/console/credentials/{}", credential["id"], {}),
        ("POST", "/console/domains/{}/verify", domain["id"], {}),
        ("POST", "/console/domains/{}/release", domain["id"], {"confirm_name": domain["name"]}),
        ("POST", "/console/domains/{}/credentials", domain["id"], {}),
        ("POST", "/console/credentials/{}/rotate", credential["id"], {"grace_period_seconds": "0"}),
        ("POST", "/console/credentials/{}/suspend", credential["id"], {}),
        ("POST", "/console/credentials/{}/resume", credential["id"], {}),
        ("POST", "/console/credentials/{}/restrictions", credential["id"], {"messages_per_minute": "1"}),
        ("POST", "/console/credentials/{}/deactivate", credential["id"], {"confirm_name": domain["name"]}),
    ]
    for method, template, real, form in attempts:
        answers = []
        for ident in (real, random_id):
            path = template.format(ident)
            if method == "GET":
                response = await live.client.get(path, headers=cookies(token))
            else:
                response = await live.client.post(path, data={"csrf_token": CSRF, **form}, headers=cookies(token))
            answers.append((response.status_code, response.text.replace(ident, "ID")))
        assert answers[0][0] == 404, template
        assert answers[0] == answers[1], template
    mine = await live.client.get(f"/v1/smtp/credentials/{credential['id']}", headers=owner.headers)
    assert mine.json()["status"] == "active" and len(mine.json()["secrets"]) == 1
    assert mine.json()["limits"]["messages_per_minute"] is None
    assert (await live.client.get(f"/v1/domains/{domain['id']}", headers=owner.headers)).status_code == 200


async def test_the_restrictions_form_submitted_as_rendered_keeps_an_expiry_with_seconds(live) -> None:
    # The page shows the expiry to the minute; sent back as shown, it moved 30 s earlier (and one already within
    # its last minute would have been refused as past).
    tenant = await live.tenant()
    token = session_tokens.mint_session(live.settings, tenant.account_id).token
    domain = await live.verified_domain(tenant)
    credential = (await live.credential(tenant, domain["id"])).json()
    path = f"/v1/smtp/credentials/{credential['id']}"
    patched = await live.client.patch(path, json={"expires_at": "2031-01-01T10:00:30Z"}, headers=tenant.headers)
    assert patched.status_code == 200, patched.text
    page = await page_with(live, f"/console/credentials/{credential['id']}", token, "2031-01-01")
    action = f"/console/credentials/{credential['id']}/restrictions"
    fields = form_fields(page, action)
    assert fields["expires_at"] == "2031-01-01T10:00"
    saved = await live.client.post(action, data={**fields, "messages_per_minute": "10"}, headers=cookies(token))
    assert saved.status_code == 303, saved.text[:500]
    after = (await live.client.get(path, headers=tenant.headers)).json()
    assert (after["expires_at"], after["limits"]["messages_per_minute"]) == ("2031-01-01T10:00:30Z", 10)
    # A new value typed in the form is taken, to the minute, as before.
    fields = form_fields(await page_with(live, f"/console/credentials/{credential['id']}", token, 'value="10"'), action)
    changed = await live.client.post(action, data={**fields, "expires_at": "2032-02-02T08:15"}, headers=cookies(token))
    assert changed.status_code == 303, changed.text[:500]
    assert (await live.client.get(path, headers=tenant.headers)).json()["expires_at"] == "2032-02-02T08:15:00Z"

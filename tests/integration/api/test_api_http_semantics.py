"""HTTP semantics of the REST API, whatever the endpoint: strict UTF-8 JSON bodies, body size, HEAD, unknown routes
and methods, no trailing-slash redirects."""

from __future__ import annotations

import json

import pytest
from api_support import assert_error


async def test_oversized_body_is_413_before_parsing(api) -> None:
    tenant = await api.tenant()
    big = b'{"name": "' + b"a" * (api.settings.api_max_body_bytes + 10) + b'"}'
    response = await api.client.post(
        "/v1/domains", content=big, headers={**tenant.headers, "Content-Type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")

    async def chunks():  # no Content-Length: the limit holds while streaming too
        for _ in range(20):
            yield b"x" * 8192

    streamed = await api.client.post("/v1/domains", content=chunks(), headers=tenant.headers)
    assert_error(streamed, 413, "payload_too_large")
    # Ten megabytes, unauthenticated: refused on the declared length alone.
    huge = await api.client.post("/v1/domains", content=b"{" + b" " * 10_000_000 + b"}")
    assert huge.status_code == 413


async def test_unknown_route_and_method_use_the_error_body(api) -> None:
    tenant = await api.tenant()
    assert_error(await api.client.get("/v1/nothing-here", headers=tenant.headers), 404, "not_found")
    assert_error(await api.client.put("/v1/domains", headers=tenant.headers), 405, "method_not_allowed")


async def test_a_trailing_slash_is_a_404_error_body_never_a_redirect(api) -> None:
    # Starlette would answer 307 to a Location built from the Host header, a POST's body and key following it.
    tenant = await api.tenant()
    headers = {**tenant.headers, "Host": "attacker.example"}
    for response in (
        await api.client.get("/v1/smtp/credentials/", headers=headers),
        await api.client.post("/v1/domains/", json={"name": "slash.example"}, headers=headers),
    ):
        assert "location" not in response.headers
        assert_error(response, 404, "not_found")
    home = await api.client.get("/console", headers={"Host": "attacker.example"})
    assert (home.status_code, home.headers["location"]) == (307, "/console/")


async def test_head_is_the_get_without_its_body(api) -> None:
    tenant = await api.tenant()
    await api.domain(tenant)
    for path in ("/v1/domains", "/v1/smtp/credentials", "/v1/usage", "/healthz"):
        get = await api.client.get(path, headers=tenant.headers)
        head = await api.client.head(path, headers=tenant.headers)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-type"] == get.headers["content-type"]
        assert head.headers["content-length"] == get.headers["content-length"]
    unauthenticated = await api.client.head("/v1/domains")
    assert (unauthenticated.status_code, unauthenticated.content) == (401, b"")
    refused = await api.client.put("/v1/domains", headers=tenant.headers)
    assert refused.headers["Allow"] == "GET, HEAD, POST"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (json.dumps({"name": "utf16.example"}).encode("utf-16"), "application/json"),
        (json.dumps({"name": "utf32.example"}).encode("utf-32"), "application/json"),
        (b'{"name": "first.example", "name": "second.example"}'.decode().encode("utf-16-le"), "application/json"),
        (b'{"name": "be.example"}'.decode().encode("utf-16-be"), "application/json"),
        (b'{"name": "le32.example"}'.decode().encode("utf-32-le"), "application/json"),
        (b'{"name": "latin.example"}', "application/json; charset=iso-8859-1"),
        (b'{"name": "first.example", "name": "second.example"}', "application/json"),
        (b'{"name": "same.example", "name": "same.example"}', "application/json"),
    ],
    ids=[
        "utf-16",
        "utf-32",
        "utf-16-le-no-bom-repeated-name",
        "utf-16-be-no-bom",
        "utf-32-le-no-bom",
        "latin-1-declared",
        "repeated-name",
        "repeated-name-same-value",
    ],
)
async def test_a_body_that_is_not_strict_utf8_json_is_422_and_changes_nothing(api, content, content_type) -> None:
    # What a proxy or an audit log reads must be what is applied: no guessed encoding, no last-of-two-names-wins.
    tenant = await api.tenant()
    response = await api.client.post(
        "/v1/domains", content=content, headers={**tenant.headers, "Content-Type": content_type}
    )
    assert_error(response, 422, "validation_error")
    assert (await api.client.get("/v1/domains", headers=tenant.headers)).json() == []


async def test_a_utf8_body_with_a_byte_order_mark_is_read(api) -> None:
    tenant = await api.tenant()
    response = await api.client.post(
        "/v1/domains",
        content=b"\xef\xbb\xbf" + json.dumps({"name": "bom.example"}).encode(),
        headers={**tenant.headers, "Content-Type": "application/json; charset=UTF-8"},
    )
    assert response.status_code == 201, response.text

"""The `taifa_session` JWT cookie: accepted tokens, every attack refused with the one 401, CSRF double submit."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import time
import uuid
from datetime import UTC, datetime

import jwt
import pytest
from api_support import running_api, venv_bin
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from taifa_api.entrypoints.http.app import create_app
from taifa_api.entrypoints.http.auth import InvalidKeyConfiguration
from taifa_localstack import ServiceFailed, run_once

SECRET = "test-hs256-secret-that-is-long-enough-for-hs512-too-0123456789abcdef"
ISSUER = "https://auth.taifa.test"
AUDIENCE = "taifa-api"
UNAUTHORIZED = b'{"error":{"code":"unauthorized","message":"Missing or invalid authentication."}}'

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def _pem(private) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


PUBLIC_PEMS = _pem(RSA_KEY) + _pem(ED_KEY)


@pytest.fixture
async def jwt_api(make_settings):
    settings = make_settings(
        api_jwt_secret=SECRET, api_jwt_public_keys=PUBLIC_PEMS, api_jwt_issuer=ISSUER, api_jwt_audience=AUDIENCE
    )
    async with running_api(settings) as api:
        yield api


def claims(subject, **overrides):
    base = {"account_id": str(subject), "exp": int(time.time()) + 300, "iss": ISSUER, "aud": AUDIENCE}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict, alg: str = "none") -> str:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(payload).encode())}."


def cookie_header(**cookies: str) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items())}


async def get_with_cookie(api, token: str):
    return await api.client.get("/v1/domains", headers=cookie_header(taifa_session=token))


@pytest.mark.parametrize("algorithm", ["HS256", "RS256", "EdDSA"])
async def test_valid_session_cookie_is_accepted(jwt_api, algorithm) -> None:
    tenant = await jwt_api.tenant()
    key = {"HS256": SECRET, "RS256": RSA_KEY, "EdDSA": ED_KEY}[algorithm]
    token = jwt.encode(claims(tenant.account_id), key, algorithm=algorithm)
    response = await get_with_cookie(jwt_api, token)
    assert response.status_code == 200, response.text


async def test_jwt_attacks_are_all_the_same_401(jwt_api) -> None:
    tenant = await jwt_api.tenant()
    account = tenant.account_id
    good = claims(account)
    public_pem = _pem(RSA_KEY).encode()
    tampered = jwt.encode(good, SECRET, algorithm="HS256").split(".")
    tampered[1] = _b64(json.dumps(claims(uuid.uuid4())).encode())
    attacks = {
        "alg none": unsigned(good),
        "alg None": unsigned(good, "None"),
        "forged secret": jwt.encode(
            good, "another-secret-of-enough-length-for-hs512-too-0123456789abcdefgh", algorithm="HS256"
        ),
        "hs256 signed with the rsa public key": _hs256_with_raw_key(good, public_pem),
        "expired": jwt.encode(claims(account, exp=int(time.time()) - 10), SECRET, algorithm="HS256"),
        "missing exp": jwt.encode(claims(account, exp=None), SECRET, algorithm="HS256"),
        "future nbf": jwt.encode(claims(account, nbf=int(time.time()) + 600), SECRET, algorithm="HS256"),
        "wrong aud": jwt.encode(claims(account, aud="another-api"), SECRET, algorithm="HS256"),
        "missing aud": jwt.encode(claims(account, aud=None), SECRET, algorithm="HS256"),
        "wrong iss": jwt.encode(claims(account, iss="https://evil.test"), SECRET, algorithm="HS256"),
        "missing account_id": jwt.encode(claims(account, account_id=None), SECRET, algorithm="HS256"),
        "account_id not a uuid": jwt.encode(claims(account, account_id="admin"), SECRET, algorithm="HS256"),
        "unknown account": jwt.encode(claims(uuid.uuid4()), SECRET, algorithm="HS256"),
        "tampered payload": ".".join(tampered),
        "rs256 by another key": jwt.encode(
            good, rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256"
        ),
        "hs512 not in the list": jwt.encode(good, SECRET, algorithm="HS512"),
        "garbage": "not.a.jwt",
        "empty segments": "..",
    }
    for name, token in attacks.items():
        response = await get_with_cookie(jwt_api, token)
        assert (response.status_code, response.content) == (401, UNAUTHORIZED), name


def _hs256_with_raw_key(payload: dict, key: bytes) -> str:
    """HS256 signed with the RSA public key bytes (PyJWT refuses to do it, so sign by hand)."""
    import hashlib
    import hmac

    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(payload).encode())
    signature = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


async def test_token_from_another_environment_is_refused(make_settings) -> None:
    async with running_api(make_settings(api_jwt_secret=SECRET, api_jwt_issuer=ISSUER)) as api:
        tenant = await api.tenant()
        staging = jwt.encode(claims(tenant.account_id, iss="https://auth.staging.test", aud=None), SECRET, "HS256")
        assert (await get_with_cookie(api, staging)).status_code == 401
        production = jwt.encode(claims(tenant.account_id, aud=None), SECRET, "HS256")
        assert (await get_with_cookie(api, production)).status_code == 200


async def test_cookie_post_and_delete_need_a_matching_csrf_header(jwt_api) -> None:
    tenant = await jwt_api.tenant()
    token = jwt.encode(claims(tenant.account_id), SECRET, algorithm="HS256")
    client = jwt_api.client
    name = f"c{uuid.uuid4().hex[:8]}.example"

    no_header = await client.post(
        "/v1/domains", json={"name": name}, headers=cookie_header(taifa_session=token, taifa_csrf="abc")
    )
    wrong = await client.post(
        "/v1/domains",
        json={"name": name},
        headers={**cookie_header(taifa_session=token, taifa_csrf="abc"), "X-CSRF-Token": "abd"},
    )
    no_cookie = await client.post(
        "/v1/domains", json={"name": name}, headers={**cookie_header(taifa_session=token), "X-CSRF-Token": "abc"}
    )
    delete = await client.delete(f"/v1/smtp/credentials/{uuid.uuid4()}", headers=cookie_header(taifa_session=token))
    for response in (no_header, wrong, no_cookie, delete):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "csrf_failed"
    ok = await client.post(
        "/v1/domains",
        json={"name": name},
        headers={**cookie_header(taifa_session=token, taifa_csrf="abc"), "X-CSRF-Token": "abc"},
    )
    assert ok.status_code == 201, ok.text
    # GET needs no CSRF token; an API key request needs none either.
    assert (await client.get("/v1/domains", headers=cookie_header(taifa_session=token))).status_code == 200
    assert (await client.post("/v1/domains", json={"name": "k" + name}, headers=tenant.headers)).status_code == 201


async def test_rs_only_configuration_refuses_hs256(make_settings) -> None:
    async with running_api(make_settings(api_jwt_secret=None, api_jwt_public_keys=PUBLIC_PEMS)) as api:
        tenant = await api.tenant()
        assert (
            await get_with_cookie(api, jwt.encode(claims(tenant.account_id, iss=None, aud=None), RSA_KEY, "RS256"))
        ).status_code == 200
        hs = jwt.encode(claims(tenant.account_id, iss=None, aud=None), SECRET, "HS256")
        assert (await get_with_cookie(api, hs)).status_code == 401
        confused = _hs256_with_raw_key(claims(tenant.account_id, iss=None, aud=None), _pem(RSA_KEY).encode())
        assert (await get_with_cookie(api, confused)).status_code == 401


def revoke_session(database_url: str, *args: str) -> dict:
    out = run_once([venv_bin("taifa-admin"), "session", "revoke", *args], env={"TAIFA_DATABASE_URL": database_url})
    return json.loads(out)


async def test_a_session_revoked_by_jti_gets_the_one_401_from_the_next_request(jwt_api, api_db) -> None:
    tenant = await jwt_api.tenant()
    stolen_jti, other_jti = f"s-{uuid.uuid4()}", f"s-{uuid.uuid4()}"
    exp = int(time.time()) + 300
    stolen = jwt.encode(claims(tenant.account_id, jti=stolen_jti, exp=exp), SECRET, "HS256")
    other = jwt.encode(claims(tenant.account_id, jti=other_jti), SECRET, "HS256")
    without_jti = jwt.encode(claims(tenant.account_id), SECRET, "HS256")
    for token in (stolen, other, without_jti):
        assert (await get_with_cookie(jwt_api, token)).status_code == 200

    expires_at = datetime.fromtimestamp(exp, UTC).isoformat()
    revoked = await asyncio.to_thread(revoke_session, api_db, "--jti", stolen_jti, "--expires-at", expires_at)
    assert revoked == {"jti": stolen_jti, "revoked": True, "changed": True, "expires_at": expires_at}

    response = await get_with_cookie(jwt_api, stolen)
    assert (response.status_code, response.content) == (401, UNAUTHORIZED)
    assert (await get_with_cookie(jwt_api, other)).status_code == 200
    assert (await get_with_cookie(jwt_api, without_jti)).status_code == 200
    again = await asyncio.to_thread(revoke_session, api_db, "--jti", stolen_jti)
    assert again["changed"] is False


async def test_jti_can_be_required(make_settings) -> None:
    async with running_api(make_settings(api_jwt_secret=SECRET, api_jwt_require_jti=True)) as api:
        tenant = await api.tenant()
        bare = jwt.encode(claims(tenant.account_id, iss=None, aud=None), SECRET, "HS256")
        assert (await get_with_cookie(api, bare)).status_code == 401
        with_jti = jwt.encode(claims(tenant.account_id, iss=None, aud=None, jti="s-1"), SECRET, "HS256")
        assert (await get_with_cookie(api, with_jti)).status_code == 200


def test_revoke_refuses_a_malformed_jti_or_expiry(api_db) -> None:
    for args in (["--jti", ""], ["--jti", "x" * 256], ["--jti", "ok", "--expires-at", "tomorrow"]):
        with pytest.raises(ServiceFailed, match="validation_error"):
            revoke_session(api_db, *args)


async def test_an_api_with_unusable_public_keys_refuses_to_start(make_settings, tmp_path) -> None:
    with pytest.raises(InvalidKeyConfiguration):
        create_app(make_settings(api_jwt_public_keys=str(tmp_path / "missing.pem")))
    result = await asyncio.to_thread(
        subprocess.run,
        [venv_bin("taifa-api"), "serve"],
        env={
            **os.environ,
            "TAIFA_API_PUBLISHER_ENABLED": "false",
            "TAIFA_API_JWT_PUBLIC_KEYS": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "refusing to start" in result.stderr and "TAIFA_API_JWT_PUBLIC_KEYS" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_api_whose_active_signing_key_id_is_not_among_its_keys_refuses_to_start_in_one_line() -> None:
    """It exited 1 with a pydantic traceback (a review's finding); deploy/README promises exit 2 and one line."""
    secret = "s" * 64
    result = subprocess.run(
        [venv_bin("taifa-api"), "serve"],
        env={**os.environ, "TAIFA_EVENT_SIGNING_KEYS": f"taifa-2:{secret}", "TAIFA_EVENT_SIGNING_KEY_ID": "taifa-1"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "refusing to start" in result.stderr and "Traceback" not in result.stderr
    assert secret not in result.stderr

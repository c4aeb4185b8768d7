"""Session-JWT verification without I/O: fixed algorithms, key types per algorithm, required claims."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError
from taifa_api.entrypoints.http.auth import Authenticator, InvalidKeyConfiguration, csrf_ok, load_public_keys
from taifa_api.settings import Settings

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _pem(private) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _authenticator(**settings: object) -> Authenticator:
    return Authenticator(Settings(**settings), pool=None)  # type: ignore[arg-type]


def _claims(**extra: object) -> dict[str, object]:
    return {"account_id": str(uuid.uuid4()), "exp": int(time.time()) + 60, **extra}


def test_public_keys_load_from_pem_text_or_a_file(tmp_path) -> None:
    text = _pem(RSA_KEY) + _pem(EC_KEY)
    assert len(load_public_keys(text)) == 2
    path = tmp_path / "keys.pem"
    path.write_text(text)
    assert len(load_public_keys(str(path))) == 2
    assert load_public_keys(None) == [] and load_public_keys("") == []


def test_es256_token_verifies_only_with_an_ec_key() -> None:
    auth = _authenticator(api_jwt_public_keys=_pem(RSA_KEY) + _pem(EC_KEY))
    assert auth.decode_session(jwt.encode(_claims(), EC_KEY, algorithm="ES256")) is not None
    assert auth.decode_session(jwt.encode(_claims(), RSA_KEY, algorithm="RS256")) is not None
    assert auth.decode_session(jwt.encode(_claims(), RSA_KEY, algorithm="PS256")) is None  # not in the list


def test_hs256_is_refused_when_no_secret_is_configured() -> None:
    auth = _authenticator(api_jwt_public_keys=_pem(RSA_KEY))
    assert auth.decode_session(jwt.encode(_claims(), "x" * 40, algorithm="HS256")) is None


def test_exp_and_account_id_are_required() -> None:
    auth = _authenticator(api_jwt_secret="s" * 40)
    assert auth.decode_session(jwt.encode({"account_id": str(uuid.uuid4())}, "s" * 40, algorithm="HS256")) is None
    assert auth.decode_session(jwt.encode({"exp": int(time.time()) + 60}, "s" * 40, algorithm="HS256")) is None
    assert auth.decode_session(jwt.encode(_claims(), "s" * 40, algorithm="HS256")) is not None


def test_csrf_double_submit_needs_both_values_equal_and_non_empty() -> None:
    assert csrf_ok("abc", "abc")
    assert not csrf_ok("abc", "abd")
    assert not csrf_ok("", "")
    assert not csrf_ok(None, "abc")
    assert not csrf_ok("abc", None)


HOURS = 3600


def test_a_session_longer_than_the_lifetime_cap_is_refused() -> None:
    """`exp` at most `TAIFA_API_JWT_MAX_LIFETIME_SECONDS` (12 h) after `iat`, or after now without `iat`."""
    secret = "s" * 40
    auth = _authenticator(api_jwt_secret=secret)
    now = int(time.time())

    def decoded(**claims: object) -> bool:
        return auth.decode_session(jwt.encode({"account_id": str(uuid.uuid4()), **claims}, secret, "HS256")) is not None

    assert decoded(iat=now - 60, exp=now - 60 + 12 * HOURS)
    assert not decoded(iat=now - 60, exp=now - 60 + 12 * HOURS + 1)
    assert not decoded(iat=now - 60, exp=now + 30 * 24 * HOURS)
    assert decoded(exp=now + 11 * HOURS)
    assert not decoded(exp=now + 13 * HOURS)  # no iat: measured from now
    assert not decoded(iat="yesterday", exp=now + 60)
    short = _authenticator(api_jwt_secret=secret, api_jwt_max_lifetime_seconds=600)
    assert short.decode_session(jwt.encode(_claims(iat=now, exp=now + 601), secret, "HS256")) is None
    assert short.decode_session(jwt.encode(_claims(iat=now, exp=now + 600), secret, "HS256")) is not None


def test_jti_is_required_only_when_configured_and_must_be_a_string() -> None:
    secret = "s" * 40
    optional = _authenticator(api_jwt_secret=secret)
    required = _authenticator(api_jwt_secret=secret, api_jwt_require_jti=True)
    assert optional.decode_session(jwt.encode(_claims(), secret, "HS256")) is not None
    assert required.decode_session(jwt.encode(_claims(), secret, "HS256")) is None
    assert required.decode_session(jwt.encode(_claims(jti="s-1"), secret, "HS256")) is not None
    assert optional.decode_session(jwt.encode(_claims(jti=42), secret, "HS256")) is None
    assert optional.decode_session(jwt.encode(_claims(jti="x" * 256), secret, "HS256")) is None


def test_an_hs256_secret_under_32_bytes_refuses_to_start() -> None:
    with pytest.raises(ValidationError, match="api_jwt_secret"):
        Settings(api_jwt_secret="s" * 31)
    with pytest.raises(ValidationError, match="api_jwt_secret"):
        Settings(api_jwt_secret="")
    assert Settings(api_jwt_secret="é" * 16).api_jwt_secret is not None  # 32 bytes in UTF-8


def test_public_keys_that_parse_to_none_refuse_to_start(tmp_path) -> None:
    empty_file = tmp_path / "keys.pem"
    empty_file.write_text("")
    private_only = RSA_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    for setting in ("not a key", str(empty_file), private_only, str(tmp_path / "missing.pem")):
        with pytest.raises(InvalidKeyConfiguration):
            load_public_keys(setting)
        with pytest.raises(InvalidKeyConfiguration):
            _authenticator(api_jwt_public_keys=setting)


def test_public_keys_no_algorithm_may_use_refuse_to_start() -> None:
    weak_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point of the test
    p384 = ec.generate_private_key(ec.SECP384R1())
    for key in (weak_rsa, p384):
        with pytest.raises(InvalidKeyConfiguration):
            load_public_keys(_pem(RSA_KEY) + _pem(key))

"""Session-JWT verification without I/O: fixed algorithms, key types per algorithm, required claims."""

from __future__ import annotations

import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from taifa_api.entrypoints.http.auth import Authenticator, csrf_ok, load_public_keys
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

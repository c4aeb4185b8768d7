"""The API's event signing settings: the publisher never starts without a usable key, secrets never echo."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from taifa_api.settings import Settings
from taifa_events.signing import InvalidKeyring


def test_the_keyring_signs_with_the_configured_active_key() -> None:
    keys = f"old:{secrets.token_hex(32)},new:{secrets.token_hex(32)}"
    keyring = Settings(event_signing_keys=keys, event_signing_key_id="new").event_keyring()
    assert keyring.active == "new" and keyring.key_ids == ("new", "old")


def test_malformed_keys_are_refused_without_echoing_the_secret() -> None:
    short = "tooshort-secret-value"
    with pytest.raises(ValidationError) as refused:
        Settings(event_signing_keys=f"k1:{short}", event_signing_key_id="k1")
    assert "shorter than 32 bytes" in str(refused.value) and short not in str(refused.value)
    long_secret = secrets.token_hex(32)
    with pytest.raises(ValidationError) as refused:
        Settings(event_signing_keys=f"k1:{long_secret}", event_signing_key_id="k2")
    assert "not among the ids of the" in str(refused.value) and long_secret not in str(refused.value)


def test_without_keys_there_is_no_keyring_to_publish_with(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAIFA_EVENT_SIGNING_KEYS", raising=False)
    monkeypatch.delenv("TAIFA_EVENT_SIGNING_KEY_ID", raising=False)
    with pytest.raises(InvalidKeyring, match="TAIFA_EVENT_SIGNING_KEYS and TAIFA_EVENT_SIGNING_KEY_ID must be set"):
        Settings().event_keyring()
    with pytest.raises(InvalidKeyring):
        Settings(event_signing_keys=f"k1:{secrets.token_hex(32)}").event_keyring()  # no active key id


def test_taifa_api_serve_refuses_to_start_without_a_signing_key() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAIFA_EVENT_SIGNING")}
    env["TAIFA_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"  # never reached: it refuses first
    tool = str(Path(sys.executable).with_name("taifa-api"))
    result = subprocess.run([tool, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "refusing to start" in result.stderr and "TAIFA_EVENT_SIGNING_KEYS" in result.stderr
    assert "Traceback" not in result.stderr

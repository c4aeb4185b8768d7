"""The test session's event signing keyring (tests/conftest.py puts its key into the environment)."""

from __future__ import annotations

import os

from taifa_events.signing import Keyring


def signing_keyring() -> Keyring:
    """The keyring the API and the projectors under test use, with its active key (to sign as the API does)."""
    return Keyring.parse(os.environ["TAIFA_EVENT_SIGNING_KEYS"], os.environ["TAIFA_EVENT_SIGNING_KEY_ID"])

"""The DNS TXT record that proves control of a domain."""

from __future__ import annotations

import secrets
from typing import Final

RECORD_TYPE: Final = "TXT"
RECORD_LABEL: Final = "_taifa"
VALUE_PREFIX: Final = "taifa-verification="


def record_name(domain: str) -> str:
    return f"{RECORD_LABEL}.{domain}"


def new_record_value() -> str:
    """A fresh, unguessable verification value (public once published in DNS, so not a secret)."""
    return VALUE_PREFIX + secrets.token_urlsafe(24)


def txt_proves_control(txt_strings: list[str], expected_value: str) -> bool:
    """True when one of the TXT record values is exactly the expected value (surrounding spaces ignored)."""
    return any(value.strip() == expected_value for value in txt_strings)

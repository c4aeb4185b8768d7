"""Reading the value of a record that declares `CredentialDeactivated` but cannot be decoded (`batches` revokes
its domain): whether the value contradicts that declaration, and the position it names."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from taifa_events import CredentialDeactivated

DEACTIVATION = CredentialDeactivated.EVENT_TYPE


def json_object(value: bytes | None) -> dict[str, Any] | None:
    """An undecodable record's value read as a JSON object, if it is one (None otherwise)."""
    try:
        found = json.loads(value or b"")
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def contradicts_declaration(envelope: dict[str, Any] | None, domain_id: UUID) -> bool:
    """The value (`json_object`) is no `CredentialDeactivated` envelope (another event type, or none, as a usage
    record), or names another domain than the record's key. An unreadable value contradicts nothing: the
    revocation fails closed."""
    if envelope is None:
        return False
    if envelope.get("event_type") != DEACTIVATION:
        return True
    data = envelope.get("data")
    named = data.get("domain_id") if isinstance(data, dict) else None
    return named is not None and str(named).lower() != str(domain_id)


def declared_position(value: bytes | None) -> int | None:
    """The `position` an undecodable record's value names, if it is a JSON object that names one."""
    return position_of(json_object(value))


def position_of(envelope: dict[str, Any] | None) -> int | None:
    position = envelope.get("position") if envelope is not None else None
    return position if isinstance(position, int) and not isinstance(position, bool) and position > 0 else None

"""Who caused an event, from where, in which request: the envelope's optional `metadata` (issue 17).

Kept apart from `audit` so that the envelope can carry it without importing the audit feed's rules.
Older events have no metadata; they read as actor `unknown` (see `metadata_or_unknown`).
"""

from __future__ import annotations

import re
from ipaddress import ip_address
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ActorType = Literal["api_key", "session", "operator", "system", "unknown"]
# Dotted-quad IPv4 as ipaddress writes it (ASCII digits, no leading zeros): such a text is already normalised.
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")


class Actor(BaseModel):
    """The principal behind a command: an API key (its key id), a session (its `sub`, else the account id),
    an operator through `taifa-admin` (the OS user), a Taifa process (`system`, e.g. the webhook dispatcher
    disabling an endpoint, the relay reporting a quota), or `unknown` (events written before metadata)."""

    # Unknown fields are ignored, like everywhere in the envelope (consumers ignore unknown fields: a later
    # writer may add one without making every older consumer dead-letter the event).
    model_config = ConfigDict(frozen=True, extra="ignore")

    type: ActorType
    id: str | None = Field(default=None, max_length=200)


UNKNOWN_ACTOR = Actor(type="unknown", id=None)


class EventMetadata(BaseModel):
    """The request context of an event: actor, the client's address and the request id. Never a secret."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    actor: Actor
    source_ip: str | None = Field(default=None, max_length=64)
    request_id: str | None = Field(default=None, max_length=200)

    @field_validator("source_ip")
    @classmethod
    def _an_address(cls, value: str | None) -> str | None:
        """An IP address (normalised), or None; a proxy's junk never lands in the feed."""
        if value is None:
            return None
        if _CANONICAL_IPV4.fullmatch(value):
            return value  # already what str(ip_address(value)) gives, without its cost (every event carries one)
        try:
            return str(ip_address(value))
        except ValueError:
            return None


UNKNOWN_METADATA = EventMetadata(actor=UNKNOWN_ACTOR)


def metadata_or_unknown(metadata: EventMetadata | None) -> EventMetadata:
    """An event's metadata, or the `unknown` actor for events written before metadata existed."""
    return UNKNOWN_METADATA if metadata is None else metadata

"""Keyset paging of the lists (newest first): the limit's bounds and the opaque cursor.

A cursor names the last item a page returned, `(created_at, id)`, so the next page starts strictly after
it on the list's index: stable while new items are inserted (they sort before the cursor) and as cheap on
page 1000 as on page 1. It is base64url of `<kind>.<microseconds>.<id hex>.<checksum>`: the kind keeps a
domains cursor off the credentials list, and the checksum turns any edit into a 422. The cursor is not a
capability (every query is scoped to the caller's account), so a checksum, not a keyed MAC, is enough.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal
from uuid import UUID

from taifa_api.domain.errors import InvalidCursor

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
MAX_CURSOR_LENGTH: Final = 200

ListKind = Literal["credentials", "domains", "webhooks", "webhook_deliveries", "events"]
_KIND_TAG: Final[dict[str, str]] = {
    "credentials": "c",
    "domains": "d",
    "webhooks": "w",
    "webhook_deliveries": "v",
    "events": "e",  # the audit feed: (occurred_at, event id)
}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Position:
    """The last item of a page: the next page holds the items after it (older, or as old with a smaller id)."""

    created_at: datetime
    item_id: UUID


def _checksum(payload: str) -> str:
    return hashlib.blake2b(payload.encode("ascii"), digest_size=6).hexdigest()


def encode_cursor(kind: ListKind, position: Position) -> str:
    micros = (position.created_at - _EPOCH) // timedelta(microseconds=1)
    payload = f"{_KIND_TAG[kind]}.{micros}.{position.item_id.hex}"
    token = f"{payload}.{_checksum(payload)}".encode("ascii")
    return base64.urlsafe_b64encode(token).decode("ascii").rstrip("=")


def decode_cursor(kind: ListKind, cursor: str) -> Position:
    """The position a cursor of this list names, or InvalidCursor (422) for anything else."""
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH or not cursor.isascii():
        raise InvalidCursor()
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        tag, micros, item_hex, checksum = text.split(".")
        payload = f"{tag}.{micros}.{item_hex}"
        if tag != _KIND_TAG[kind] or checksum != _checksum(payload) or not micros.lstrip("-").isdigit():
            raise InvalidCursor()
        created_at = _EPOCH + timedelta(microseconds=int(micros))
        item_id = UUID(hex=item_hex)
    except (binascii.Error, UnicodeError, ValueError, OverflowError) as exc:
        raise InvalidCursor() from exc
    if item_id.hex != item_hex or encode_cursor(kind, Position(created_at, item_id)) != cursor:
        raise InvalidCursor()  # one canonical spelling per position
    return Position(created_at, item_id)

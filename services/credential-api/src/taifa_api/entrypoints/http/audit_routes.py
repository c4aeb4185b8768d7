"""The audit feed's routes (docs/api.md, "Audit trail"; CONTRACT §8): the account's events, and one credential's,
newest first, from the projector's `rm_audit_events`. Thin handlers: one read each."""

from __future__ import annotations

from typing import Annotated, Any, Final
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Query

from taifa_api.adapters import audit_read_model, usage_read_model
from taifa_api.domain import paging
from taifa_api.domain.errors import NotFound
from taifa_api.entrypoints.http.audit_schemas import ActorOut, AuditEventOut, AuditFeedOut, SubjectOut
from taifa_api.entrypoints.http.errors import documented
from taifa_api.entrypoints.http.paging_params import CountText, OneOfEach
from taifa_api.entrypoints.http.routes import Caller, Parts

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 200

router = APIRouter(prefix="/v1", responses=documented(401, 422, 429, 503), tags=["audit"])

EventLimit = Annotated[
    int,
    Query(ge=1, le=MAX_LIMIT, description=f"Events per page, 1..{MAX_LIMIT} (default {DEFAULT_LIMIT})."),
    CountText,
]
EventCursor = Annotated[
    str | None,
    Query(max_length=paging.MAX_CURSOR_LENGTH, description="Opaque: the `next_cursor` of the previous page."),
]


def _out(row: dict[str, Any]) -> AuditEventOut:
    return AuditEventOut(
        id=row["id"],
        type=row["type"],
        occurred_at=row["occurred_at"],
        actor=ActorOut(type=row["actor_type"], id=row["actor_id"]),
        source_ip=row["source_ip"],
        subject=SubjectOut(type=row["subject_type"], id=row["subject_id"]),
        data=row["data"],
    )


async def feed_page(
    pool: asyncpg.Pool, account_id: UUID, subject_id: UUID | None, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """One page of the feed, newest first, and the cursor of the next (None on the last page); the console's
    Activity pages read it too."""
    after = paging.decode_cursor("events", cursor) if cursor is not None else None
    rows = await audit_read_model.feed(pool, account_id, subject_id=subject_id, after=after, limit=limit + 1)
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = paging.encode_cursor("events", paging.Position(page[-1]["occurred_at"], page[-1]["id"]))
    return page, next_cursor


async def _feed(parts: Parts, who: Caller, subject_id: UUID | None, limit: int, cursor: str | None) -> AuditFeedOut:
    page, next_cursor = await feed_page(parts.pool, who.account_id, subject_id, limit, cursor)
    return AuditFeedOut(data=[_out(row) for row in page], next_cursor=next_cursor)


@router.get(
    "/events",
    response_model=AuditFeedOut,
    operation_id="list_events",
    summary="The account's audit trail: who did what, from where, newest first",
    dependencies=[OneOfEach],
)
async def list_events(
    parts: Parts, who: Caller, limit: EventLimit = DEFAULT_LIMIT, cursor: EventCursor = None
) -> AuditFeedOut:
    return await _feed(parts, who, None, limit, cursor)


@router.get(
    "/smtp/credentials/{credential_id}/events",
    response_model=AuditFeedOut,
    operation_id="list_credential_events",
    responses=documented(404),
    summary="One credential's audit trail, newest first",
    dependencies=[OneOfEach],
)
async def list_credential_events(
    credential_id: UUID, parts: Parts, who: Caller, limit: EventLimit = DEFAULT_LIMIT, cursor: EventCursor = None
) -> AuditFeedOut:
    if not await usage_read_model.owns_credential(parts.pool, who.account_id, credential_id):
        raise NotFound()
    return await _feed(parts, who, credential_id, limit, cursor)

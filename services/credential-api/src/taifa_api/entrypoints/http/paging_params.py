"""The parameters and shape of the lists' pages (docs/api.md, "Paging"), shared by every list route: `limit` as
plain digits, `limit` and `cursor` at most once each, the next page announced in a `Link` header."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request, Response
from pydantic import BeforeValidator

from taifa_api.domain import paging
from taifa_api.domain.errors import InvalidRequest

RowT = TypeVar("RowT")

# A page size as the contract writes it: decimal digits, no sign, no leading zero, no fraction or separator.
_COUNT = re.compile(r"[1-9][0-9]{0,5}", re.ASCII)


def _count_text(value: object) -> object:
    """`limit` as written in the query; pydantic alone would also read `5.0`, `+5`, `05` or `1_0` as 5."""
    if isinstance(value, str) and not _COUNT.fullmatch(value):
        raise ValueError("a whole number of 1 or more, in decimal digits")  # the maximum: Query(le=...)
    return value


# After `Query(...)` in one flat `Annotated`, so that the schema keeps `minimum` / `maximum`.
CountText = BeforeValidator(_count_text)


def refuse_repeated(request: Request, names: Iterable[str], message: str) -> None:
    """Each of the query parameters `names` at most once: a repeated one is a 422 (`message`), never one of its
    values taken silently."""
    if any(len(request.query_params.getlist(name)) > 1 for name in names):
        raise InvalidRequest(message)


def one_of_each(request: Request) -> None:
    """A list's `limit` and `cursor` at most once each."""
    refuse_repeated(request, ("limit", "cursor"), "query: limit and cursor at most once each.")


OneOfEach = Depends(one_of_each)
Limit = Annotated[
    int,
    Query(
        ge=1,
        le=paging.MAX_LIMIT,
        description=f"Items per page, 1..{paging.MAX_LIMIT} (default {paging.DEFAULT_LIMIT}).",
    ),
    CountText,
]
Cursor = Annotated[
    str | None,
    Query(
        max_length=paging.MAX_CURSOR_LENGTH,
        description='Opaque: the `cursor` of the previous response\'s `Link: rel="next"`.',
    ),
]
LIST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One page, newest first",
        "headers": {
            "Link": {
                "description": 'Present only when more items remain: `</v1/...?cursor=...&limit=...>; rel="next"`.',
                "schema": {"type": "string"},
            }
        },
    }
}


def by_columns(id_column: str) -> Callable[[Mapping[str, Any]], paging.Position]:
    """The page position of a row read as a mapping: its `created_at` and its `id_column`."""
    return lambda row: paging.Position(row["created_at"], row[id_column])


def trim_page(
    kind: paging.ListKind,
    rows: Sequence[RowT],
    position_of: Callable[[RowT], paging.Position],
    limit: int,
    request: Request,
    response: Response,
) -> Sequence[RowT]:
    """Trim the one extra row fetched to learn whether more remain, and announce the next page.

    The link is a relative reference (RFC 8288 resolves it against the request URI): it never echoes the
    Host header, which a client or proxy controls.
    """
    if len(rows) <= limit:
        return rows
    page = rows[:limit]
    cursor = paging.encode_cursor(kind, position_of(page[-1]))
    response.headers["Link"] = f'<{request.url.path}?cursor={cursor}&limit={limit}>; rel="next"'
    return page

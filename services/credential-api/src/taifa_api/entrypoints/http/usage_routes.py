"""The usage routes (docs/api.md, "Usage"): one credential's series and the account's, with its per-credential
split, from the projector's usage read model. Thin handlers: the range rules live in domain/usage.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request

from taifa_api.adapters import usage_read_model
from taifa_api.domain import usage
from taifa_api.domain.errors import InvalidRequest, NotFound
from taifa_api.entrypoints.http.errors import documented
from taifa_api.entrypoints.http.paging_params import refuse_repeated
from taifa_api.entrypoints.http.routes import Caller, Parts
from taifa_api.entrypoints.http.schemas import (
    AccountUsageOut,
    CredentialSeriesOut,
    CredentialUsageOut,
    UsageBucketOut,
)

router = APIRouter(prefix="/v1", responses=documented(401, 422, 429, 503))

From = Annotated[
    str | None,
    Query(
        alias="from",
        max_length=64,
        pattern=usage.RFC3339_PATTERN,
        description="RFC 3339 date-time with an offset (default: `to` minus 24 hours); before `to`.",
        examples=["2026-11-27T00:00:00Z"],
    ),
]
To = Annotated[
    str | None,
    Query(
        max_length=64,
        pattern=usage.RFC3339_PATTERN,
        description="RFC 3339 date-time with an offset (default: now); at most 90 days after `from`.",
        examples=["2026-11-28T00:00:00Z"],
    ),
]
GranularityParam = Annotated[
    Literal["hour", "day"] | None, Query(description="`hour` (default) or `day` (UTC days).", examples=["hour"])
]


def _range(request: Request, from_: str | None, to: str | None, granularity: str | None) -> usage.UsageRange:
    """The validated range; an unknown or repeated query parameter is a 422 (never silently ignored)."""
    unknown = usage.unknown_parameters(request.query_params.keys())
    if unknown:
        raise InvalidRequest("query: only from, to and granularity are accepted.")
    refuse_repeated(request, usage.QUERY_PARAMETERS, "query: each parameter at most once.")
    return usage.usage_range(from_, to, granularity, datetime.now(UTC))


def _series(buckets: list[usage.Bucket]) -> list[UsageBucketOut]:
    return [
        UsageBucketOut(
            start=bucket.start,
            messages=bucket.counts.messages,
            recipients=bucket.counts.recipients,
            bytes=bucket.counts.bytes,
            auth_successes=bucket.counts.auth_successes,
            auth_failures=bucket.counts.auth_failures,
            refused=dict(sorted(bucket.counts.refused.items())),
        )
        for bucket in buckets
    ]


@router.get(
    "/smtp/credentials/{credential_id}/usage",
    response_model=CredentialUsageOut,
    operation_id="get_credential_usage",
    responses=documented(404),
    summary="One credential's usage per hour or UTC day (complete within 60 s of the traffic)",
)
async def credential_usage(
    credential_id: UUID,
    parts: Parts,
    who: Caller,
    request: Request,
    from_: From = None,
    to: To = None,
    granularity: GranularityParam = None,
) -> CredentialUsageOut:
    wanted = _range(request, from_, to, granularity)
    if not await usage_read_model.owns_credential(parts.pool, who.account_id, credential_id):
        raise NotFound()
    found = await usage_read_model.usage(parts.pool, who.account_id, wanted, credential_id)
    return CredentialUsageOut(
        credential_id=credential_id,
        granularity=wanted.granularity,
        series=_series(usage.series(wanted, found.get(credential_id, {}))),
    )


@router.get(
    "/usage",
    response_model=AccountUsageOut,
    operation_id="get_account_usage",
    summary="The account's usage per hour or UTC day, with a split per credential",
)
async def account_usage(
    parts: Parts,
    who: Caller,
    request: Request,
    from_: From = None,
    to: To = None,
    granularity: GranularityParam = None,
) -> AccountUsageOut:
    wanted = _range(request, from_, to, granularity)
    found = await usage_read_model.usage(parts.pool, who.account_id, wanted)
    return AccountUsageOut(
        account_id=who.account_id,
        granularity=wanted.granularity,
        series=_series(usage.series(wanted, usage.account_totals(found.values()))),
        by_credential=[
            CredentialSeriesOut(credential_id=credential_id, series=_series(usage.series(wanted, found[credential_id])))
            for credential_id in sorted(found, key=str)
        ],
    )

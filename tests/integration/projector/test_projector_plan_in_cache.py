"""The cache entry's plan through the broker (issue 16): an AccountCreated consumed after the account's credential
(another topic) still gives the credential's cache entry the account's plan."""

from __future__ import annotations

from tests.integration.projector.projector_harness import ReadSide, eventually, produce, running
from tests.unit.projector.projector_events import Domain
from tests.unit.projector.test_projector_account_plans import account_created


async def test_an_account_created_after_its_credential_gives_the_cache_entry_the_plan(isolated) -> None:
    settings = isolated.settings()
    d = Domain()
    async with ReadSide(settings) as side, running(settings):
        await produce(isolated.bootstrap, isolated.topic_names, [d.registered(2), d.verified(3), d.created(4)])
        await eventually(lambda: _plan_is(side, d, "free"), what="entry without a known plan")
        await produce(isolated.bootstrap, isolated.topic_names, [account_created(d, 1, plan="pro")])
        await eventually(lambda: _plan_is(side, d, "pro"), what="entry with the account's plan")
        mirrored = await side.pool.fetchval("SELECT plan FROM projector_auth_entries WHERE username = $1", d.username)
        assert mirrored == "pro"


async def _plan_is(side: ReadSide, d: Domain, plan: str) -> bool:
    entry = await side.entry(d.username)
    return entry is not None and entry.plan == plan

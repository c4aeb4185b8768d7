"""The cache entry's plan through the broker (issue 16): an AccountCreated consumed after the account's credential
(another topic) still gives the credential's cache entry the account's plan."""

from __future__ import annotations

import asyncio

import asyncpg
from taifa_projector.adapters.postgres import PostgresReadModelStore

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


async def test_an_account_created_while_its_credential_is_being_applied_elsewhere_still_gives_the_plan(
    isolated,
) -> None:
    """Two instances, one batch each, in flight at once: the credential's (topic smtp-credentials) and its
    account's (topic accounts). Whichever commits second must see the other's rows."""
    settings = isolated.settings()
    d = Domain()
    pool = await asyncpg.create_pool(settings.database_url, min_size=2, max_size=2)
    holder = await asyncpg.connect(settings.database_url)
    try:
        store = PostgresReadModelStore(pool, settings.projector_group_id)
        await store.apply_batch([d.registered(2), d.verified(3)], {})
        async with holder.transaction():
            # The credential's batch reads what it needs, then stops at its first write until this ends.
            await holder.execute("LOCK TABLE rm_smtp_credentials IN SHARE MODE")
            credential = asyncio.create_task(store.apply_batch([d.created(4)], {}))
            await eventually(lambda: _waiting_on_locks(holder, 1), what="the credential's batch is in flight")
            account = asyncio.create_task(store.apply_batch([account_created(d, 1, plan="pro")], {}))
            await eventually(lambda: _waiting_on_locks(holder, 2), what="the account's batch is in flight")
        await asyncio.wait_for(asyncio.gather(credential, account), 30)
        plan = await pool.fetchval("SELECT plan FROM projector_auth_entries WHERE username = $1", d.username)
        assert plan == "pro"
    finally:
        await holder.close()
        await pool.close()


async def _waiting_on_locks(conn: asyncpg.Connection, sessions: int) -> bool:
    waiting = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return bool(waiting >= sessions)

"""Replace whole tables without blocking their readers: build `<table>_rebuild`, then swap it in.

A rebuild used to TRUNCATE the live tables and refill them in one transaction: TRUNCATE holds an
ACCESS EXCLUSIVE lock until commit, so every API read of the read models waited for the whole
rebuild (and answered 503 after its 30 s timeout). Here the new content goes into tables of its own
(`CREATE TABLE ... (LIKE live INCLUDING ALL EXCLUDING INDEXES)`: columns, defaults, CHECK and NOT
NULL constraints), which no reader sees; their indexes and constraints are rebuilt from the live
tables' catalog entries once the rows are in (faster than growing them row by row), their grants
and owner copied, their statistics gathered. Only then are the live tables locked, dropped and the
new ones renamed into place, in one short step: readers wait for that step alone, never for the load.

The caller runs all of it in ONE transaction: a failure or a crash leaves the live tables as they
were and no `_rebuild` table behind. The swap waits at most `SWAP_LOCK_TIMEOUT` for the live tables
(a long reader holds them) and tries again, so it never queues every other reader behind it for long.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

log = logging.getLogger(__name__)

SHADOW_SUFFIX = "_rebuild"
SWAP_LOCK_TIMEOUT = "500ms"
SWAP_ATTEMPTS = 120
SWAP_RETRY_SECONDS = 0.5
MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1

# Every index of a table, with the constraint it backs (primary key, unique, exclusion) if any.
INDEXES = """
SELECT ci.relname AS name, i.indisunique AS is_unique, pg_get_indexdef(i.indexrelid) AS indexdef,
       c.conname AS constraint_name, pg_get_constraintdef(c.oid) AS constraintdef
FROM pg_index i
JOIN pg_class ci ON ci.oid = i.indexrelid
LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x')
WHERE i.indrelid = $1::regclass
ORDER BY ci.relname
"""
# Privileges granted on a table to others than its owner (grantee 0 is PUBLIC), and its owner.
GRANTS = """
SELECT a.privilege_type, a.is_grantable,
       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee
FROM pg_class c, aclexplode(c.relacl) a
WHERE c.oid = $1::regclass AND a.grantee <> c.relowner
ORDER BY 3, 1
"""
OWNER = (
    "SELECT quote_ident(pg_get_userbyid(relowner)) AS owner, "
    "quote_ident(current_user) AS me, pg_get_userbyid(relowner) = current_user AS same "
    "FROM pg_class WHERE oid = $1::regclass"
)


class SwapTimedOut(Exception):
    """The live tables stayed locked by other transactions through every swap attempt."""


def shadow_name(table: str) -> str:
    return _identifier(table, SHADOW_SUFFIX)


def _identifier(name: str, suffix: str) -> str:
    """`name + suffix`, shortened with a hash when PostgreSQL would truncate it (and maybe collide)."""
    if len(name) + len(suffix) <= MAX_IDENTIFIER:
        return name + suffix
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_IDENTIFIER - len(suffix) - 9]}_{digest}{suffix}"


@dataclass
class Shadows:
    """The `_rebuild` tables of a set of live tables, and the renames that give their indexes the live names."""

    tables: Sequence[str]
    index_renames: list[tuple[str, str]] = field(default_factory=list)  # (temporary, live) index names
    constraint_renames: list[tuple[str, str, str]] = field(default_factory=list)  # (table, temporary, live)

    def name(self, table: str) -> str:
        assert table in self.tables
        return shadow_name(table)


async def create_shadows(conn: asyncpg.Connection, tables: Sequence[str]) -> Shadows:
    """Empty `<table>_rebuild` tables shaped like `tables`, without indexes (added by `finish_shadows`)."""
    for table in tables:
        shadow = shadow_name(table)
        await conn.execute(f"DROP TABLE IF EXISTS {shadow}")
        await conn.execute(f"CREATE TABLE {shadow} (LIKE {table} INCLUDING ALL EXCLUDING INDEXES)")
    return Shadows(tables)


async def finish_shadows(conn: asyncpg.Connection, shadows: Shadows) -> None:
    """Once the rows are in: the live tables' indexes, constraints, owner and grants; then statistics."""
    for table in shadows.tables:
        shadow = shadow_name(table)
        for index in await conn.fetch(INDEXES, table):
            temporary = _identifier(index["name"], SHADOW_SUFFIX)
            if index["constraint_name"] is not None:
                await conn.execute(f"ALTER TABLE {shadow} ADD CONSTRAINT {temporary} {index['constraintdef']}")
                # Its index takes the constraint's name (PostgreSQL keeps the two names equal).
                shadows.constraint_renames.append((table, temporary, index["constraint_name"]))
            else:
                # "CREATE [UNIQUE] INDEX <name> ON <table> USING <method> (<keys>) [...]": names are identifiers,
                # so the first " USING " is the access method's.
                method_and_keys = index["indexdef"].split(" USING ", 1)[1]
                unique = "UNIQUE " if index["is_unique"] else ""
                await conn.execute(f"CREATE {unique}INDEX {temporary} ON {shadow} USING {method_and_keys}")
                shadows.index_renames.append((temporary, index["name"]))
        owner = await conn.fetchrow(OWNER, table)
        if not owner["same"]:
            await conn.execute(f"ALTER TABLE {shadow} OWNER TO {owner['owner']}")
        for grant in await conn.fetch(GRANTS, table):
            option = " WITH GRANT OPTION" if grant["is_grantable"] else ""
            await conn.execute(f"GRANT {grant['privilege_type']} ON {shadow} TO {grant['grantee']}{option}")
        await conn.execute(f"ANALYZE {shadow}")


async def swap_in(conn: asyncpg.Connection, shadows: Shadows) -> None:
    """Lock the live tables (briefly, retrying), drop them and rename the shadows into their place."""
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        started = time.monotonic()
        try:
            async with conn.transaction():  # a savepoint: a lock timeout undoes only this attempt
                await conn.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")
                await conn.execute(f"LOCK TABLE {', '.join(shadows.tables)} IN ACCESS EXCLUSIVE MODE")
                for table in shadows.tables:
                    await conn.execute(f"DROP TABLE {table}")
                    await conn.execute(f"ALTER TABLE {shadow_name(table)} RENAME TO {table}")
                for table, temporary, live in shadows.constraint_renames:
                    await conn.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {temporary} TO {live}")
                for temporary, live in shadows.index_renames:
                    await conn.execute(f"ALTER INDEX {temporary} RENAME TO {live}")
            log.info(
                "rebuild: new read-side tables swapped in (%.3f s under lock, until commit)", time.monotonic() - started
            )
            return
        except asyncpg.LockNotAvailableError:
            log.warning(
                "rebuild: the read-side tables are in use by another transaction; swap attempt %d of %d waits",
                attempt,
                SWAP_ATTEMPTS,
            )
            await asyncio.sleep(SWAP_RETRY_SECONDS)
    raise SwapTimedOut(
        f"the read-side tables stayed locked by other transactions for {SWAP_ATTEMPTS} attempts; "
        "nothing was changed (see pg_stat_activity for long transactions on them) and the rebuild can be run again"
    )

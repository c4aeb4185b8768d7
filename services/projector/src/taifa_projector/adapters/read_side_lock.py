"""Live projectors and a rebuild never write the read side at the same time.

Every live instance holds a PostgreSQL advisory lock *shared*; `taifa-projector rebuild` takes it
*exclusively* and refuses to start while any instance holds it (its TRUNCATE would race the instance's
batches). An instance started during a rebuild waits for the rebuild to finish before it consumes.
The lock lives on a connection of its own (session level, not in the pool), so it goes with the
process: a killed instance releases it at once.
"""

from __future__ import annotations

import asyncpg

from taifa_projector.adapters.driver_errors import postgres_errors

READ_SIDE_LOCK = 0x7461_6966_6172_7364  # "taifards"


class ReadSideLock:
    def __init__(self, dsn: str, *, exclusive: bool) -> None:
        self._dsn = dsn
        self._suffix = "" if exclusive else "_shared"
        self._conn: asyncpg.Connection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def try_acquire(self) -> bool:
        """Take the lock if nobody holds it in the other mode; False (and no connection kept) otherwise."""
        return await self._take(f"SELECT pg_try_advisory_lock{self._suffix}($1)")

    async def acquire(self) -> None:
        """Take the lock, waiting as long as it is held in the other mode."""
        await self._take(f"SELECT pg_advisory_lock{self._suffix}($1)")

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            await conn.close()  # ends the session, and with it the lock

    @postgres_errors
    async def _take(self, query: str) -> bool:
        await self.release()
        conn = await asyncpg.connect(self._dsn)
        try:
            taken = await conn.fetchval(query, READ_SIDE_LOCK)  # the try_ form answers false; the other waits
        except BaseException:
            await conn.close()
            raise
        if taken is False:
            await conn.close()
            return False
        self._conn = conn
        return True

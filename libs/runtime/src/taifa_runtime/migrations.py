"""Versioned schema migrations with Alembic over asyncpg, one history and version table per owning service.

A service keeps its revisions in a `migrations/` script directory next to one module, which declares
`MIGRATIONS = Migrations.beside(__file__, "alembic_version_<service>")`; the directory's `env.py` is the two
lines `from taifa_runtime.migrations import run_env` / `run_env()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

_URL_OPTION = "taifa.database_url"
_VERSION_TABLE_OPTION = "taifa.version_table"


def connector(database_url: str) -> Callable[[], Awaitable[Any]]:
    """What SQLAlchemy's engine calls to connect: asyncpg parses the DSN itself, exactly as the services' pools do.

    SQLAlchemy's asyncpg dialect would pass every query parameter of its URL to `asyncpg.connect` as a keyword,
    and libpq's TLS parameters (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`...) are not keywords there: the
    documented `?sslmode=verify-full&sslrootcert=...` DSN would fail. Handing the DSN over untouched keeps one
    meaning of a DSN for migrations and services.
    """

    async def connect() -> Any:
        import asyncpg

        return await asyncpg.connect(database_url, timeout=30)

    return connect


def alembic_config(database_url: str, script_location: str, version_table: str) -> Config:
    config = Config()
    config.set_main_option("script_location", script_location)
    # `%` would be read as interpolation by configparser.
    config.set_main_option(_URL_OPTION, database_url.replace("%", "%%"))
    config.set_main_option(_VERSION_TABLE_OPTION, version_table)
    return config


def upgrade(database_url: str, script_location: str, version_table: str, revision: str = "head") -> None:
    """Bring the schema to `revision` (blocking; runs its own event loop, so call it outside one)."""
    command.upgrade(alembic_config(database_url, script_location, version_table), revision)


@dataclass(frozen=True)
class Migrations:
    """One service's migration history: its script directory and the version table that records its head."""

    script_location: str
    version_table: str

    @classmethod
    def beside(cls, module_file: str, version_table: str) -> Migrations:
        """The `migrations/` script directory next to `module_file` (a module's `__file__`)."""
        return cls(str(Path(module_file).with_name("migrations")), version_table)

    def upgrade(self, database_url: str, revision: str = "head") -> None:
        """Bring the schema to `revision` (blocking; runs its own event loop, so call it outside one)."""
        upgrade(database_url, self.script_location, self.version_table, revision)


def run_env() -> None:
    """The body of every script directory's env.py: run the pending revisions online, or emit SQL offline."""
    from alembic import context
    from sqlalchemy import Connection, pool
    from sqlalchemy.ext.asyncio import create_async_engine

    config = context.config
    version_table = config.get_main_option(_VERSION_TABLE_OPTION) or "alembic_version"

    def run(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=None, version_table=version_table)
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(
            "postgresql+asyncpg://",
            async_creator=connector(config.get_main_option(_URL_OPTION) or ""),
            poolclass=pool.NullPool,
        )
        try:
            async with engine.connect() as connection:
                await connection.run_sync(run)
                await connection.commit()
        finally:
            await engine.dispose()

    if context.is_offline_mode():
        context.configure(url="postgresql://", literal_binds=True, version_table=version_table)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(run_async())

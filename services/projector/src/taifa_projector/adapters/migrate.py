"""Apply the projector's Alembic migrations (`taifa-projector migrate`); its own history and version table."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config

VERSION_TABLE: Final = "alembic_version_projector"
SCRIPT_LOCATION: Final = str(Path(__file__).with_name("migrations"))


def sqlalchemy_url(database_url: str) -> str:
    """The asyncpg DSN (`postgresql://...`) as SQLAlchemy's `postgresql+asyncpg://...` URL."""
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+asyncpg://" + database_url[len(prefix) :]
    return database_url


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    # `%` would be read as interpolation by configparser.
    config.set_main_option("taifa.database_url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema to `revision` (blocking; runs its own event loop, so call it outside one)."""
    command.upgrade(alembic_config(database_url), revision)

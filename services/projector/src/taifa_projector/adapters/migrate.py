"""Apply the projector's (read models and bookkeeping) Alembic migrations: its own history and version table."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from taifa_runtime import migrations

VERSION_TABLE: Final = "alembic_version_projector"
SCRIPT_LOCATION: Final = str(Path(__file__).with_name("migrations"))


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema to `revision` (blocking; runs its own event loop, so call it outside one)."""
    migrations.upgrade(database_url, SCRIPT_LOCATION, VERSION_TABLE, revision)

"""Apply the projector's (read models and bookkeeping) Alembic migrations: its own history and version table."""

from taifa_runtime.migrations import Migrations

MIGRATIONS = Migrations.beside(__file__, version_table="alembic_version_projector")
VERSION_TABLE, SCRIPT_LOCATION, upgrade = MIGRATIONS.version_table, MIGRATIONS.script_location, MIGRATIONS.upgrade

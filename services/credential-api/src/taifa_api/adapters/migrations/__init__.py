"""Alembic migrations of the credential API's tables (version table `alembic_version_api`)."""

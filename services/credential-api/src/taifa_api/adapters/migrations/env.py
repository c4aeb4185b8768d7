"""Alembic environment: the shared runner (asyncpg, this history's own version table)."""

from taifa_runtime.migrations import run_env

run_env()

"""A service's migrations are one declaration: its script directory beside a module, and its version table."""

from __future__ import annotations

from pathlib import Path

from taifa_runtime import migrations
from taifa_runtime.migrations import Migrations


def test_beside_names_the_migrations_directory_next_to_the_module(tmp_path: Path) -> None:
    found = Migrations.beside(str(tmp_path / "migrate.py"), "alembic_version_x")
    assert found == Migrations(str(tmp_path / "migrations"), "alembic_version_x")


def test_upgrade_runs_that_directory_with_that_version_table(monkeypatch) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(migrations, "upgrade", lambda *args: calls.append(args))
    Migrations("/srv/migrations", "alembic_version_x").upgrade("postgresql://db/x")
    assert calls == [("postgresql://db/x", "/srv/migrations", "alembic_version_x", "head")]


def test_both_services_keep_their_own_history_and_version_table() -> None:
    from taifa_api.adapters import migrate as api
    from taifa_projector.adapters import migrate as projector

    assert (api.VERSION_TABLE, projector.VERSION_TABLE) == ("alembic_version_api", "alembic_version_projector")
    for service in (api, projector):
        assert (Path(service.SCRIPT_LOCATION) / "env.py").is_file()
        assert Migrations(service.SCRIPT_LOCATION, service.VERSION_TABLE) == service.MIGRATIONS

"""The README's settings table is the one the settings models generate (run `make docs` after changing a setting)."""

from __future__ import annotations

from pathlib import Path

from taifa_localstack import settings_doc

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_settings_table_matches_the_settings_models() -> None:
    text = README.read_text()
    assert settings_doc.replace_block(text, settings_doc.render_table()) == text, "run `make docs`"


def test_every_setting_has_a_description() -> None:
    for service, model in settings_doc.load_models().items():
        missing = [name for name, field in model.model_fields.items() if not field.description]
        assert not missing, f"{service}: settings without a description: {missing}"


def test_a_variable_several_services_read_shows_each_ones_meaning() -> None:
    models = settings_doc.load_models()
    (row,) = [line for line in settings_doc.render_table().splitlines() if line.startswith("| `TAIFA_REDIS_URL` |")]
    for service, model in models.items():
        description = model.model_fields["redis_url"].description
        assert f"*{service}:* {description}" in row

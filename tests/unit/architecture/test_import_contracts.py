"""The import rules of .importlinter hold, bite when broken, and fail `make test` (hence CI) through `make lint`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
SOURCES = [
    "libs/events/src",
    "libs/runtime/src",
    "deploy/localstack/src",
    "services/credential-api/src",
    "services/projector/src",
    "services/relay/src",
]


def _lint_imports(root: Path, sources: list[Path]) -> subprocess.CompletedProcess[str]:
    """lint-imports on the packages under `sources` (first on the path), with the repository's contracts."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, sources))}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(REPO / ".importlinter"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_repository_keeps_every_import_contract() -> None:
    result = _lint_imports(REPO, [REPO / s for s in SOURCES])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def copy_of_the_sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sources")
    for source in SOURCES:
        shutil.copytree(REPO / source, root / source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return root


def _broken_by(root: Path, module: str, source: str) -> str:
    """Add `module` (a path under services/ or libs/) holding `source`, and return lint-imports' report."""
    path = root / module
    path.write_text(source)
    try:
        result = _lint_imports(root, [root / s for s in SOURCES])
    finally:
        path.unlink()
    assert result.returncode != 0, "the violation went unnoticed:\n" + result.stdout[-3000:]
    return " ".join(result.stdout.split())


@pytest.mark.parametrize(
    ("module", "source", "contract"),
    [
        (
            "services/credential-api/src/taifa_api/domain/zz_violation.py",
            "import asyncpg\n",
            "The domain imports no driver, framework, settings, metrics or process plumbing BROKEN",
        ),
        (
            "services/projector/src/taifa_projector/application/zz_violation.py",
            "from taifa_projector.adapters import postgres\n",
            "Each service: entrypoints -> bootstrap -> adapters -> application -> domain BROKEN",
        ),
        (
            "services/relay/src/taifa_relay/zz_violation.py",
            "",
            "Each service: entrypoints -> bootstrap -> adapters -> application -> domain BROKEN",
        ),
        (
            "services/relay/src/taifa_relay/application/zz_violation.py",
            "import redis.asyncio\n",
            "The application layer reaches drivers only through its ports BROKEN",
        ),
        (
            "services/credential-api/src/taifa_api/application/zz_violation.py",
            "from taifa_api import settings\n",
            "Settings are read only by bootstrap and entrypoints BROKEN",
        ),
        (
            "services/relay/src/taifa_relay/entrypoints/zz_violation.py",
            "import taifa_projector\n",
            "The services never import each other BROKEN",
        ),
        (
            "libs/events/src/taifa_events/zz_violation.py",
            "import taifa_api\n",
            "libs/events imports no service, no process plumbing and no driver BROKEN",
        ),
        (
            "libs/runtime/src/taifa_runtime/zz_violation.py",
            "import taifa_relay\n",
            "libs/runtime imports no service BROKEN",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(copy_of_the_sources: Path, module: str, source: str, contract: str):
    assert contract in _broken_by(copy_of_the_sources, module, source)


def test_an_import_cycle_between_sibling_modules_is_refused(copy_of_the_sources: Path) -> None:
    entrypoints = copy_of_the_sources / "services/relay/src/taifa_relay/entrypoints"
    (entrypoints / "zz_first.py").write_text("import taifa_relay.entrypoints.zz_second\n")
    try:
        report = _broken_by(
            copy_of_the_sources,
            "services/relay/src/taifa_relay/entrypoints/zz_second.py",
            "import taifa_relay.entrypoints.zz_first\n",
        )
    finally:
        (entrypoints / "zz_first.py").unlink()
    assert "No import cycle between the modules of a package BROKEN" in report


def test_make_test_runs_the_linter_and_the_linter_checks_the_contracts() -> None:
    """`.ci/run` calls `make test`; a broken contract must stop it before pytest runs."""
    dry_run = subprocess.run(
        ["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    ).stdout.splitlines()
    commands = [line.strip() for line in dry_run]
    lint = next(i for i, line in enumerate(commands) if line.endswith("/lint-imports"))
    tests = next(i for i, line in enumerate(commands) if "/pytest" in line)
    assert lint < tests
    assert "make test" in (REPO / ".ci" / "run").read_text()

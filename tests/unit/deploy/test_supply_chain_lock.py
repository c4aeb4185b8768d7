"""Supply chain: every build installs a hash-pinned lock, and our own packages only from this tree.

requirements.lock (the development venv) and services/<name>/requirements.lock (each image) are written by
`make lock`. These tests prove, without network, that the locks are complete and strict (every entry pinned with
`==` and hashed, every version a pyproject.toml or requirements-dev.txt pins is the locked one, each image lock is
exactly its service's dependency closure), and that the Makefile and the Dockerfiles install them with
`--require-hashes` and install our packages with `--no-index`, so that `taifa-events` or `taifa-runtime` can never
be satisfied from a package index.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.unit.deploy.conftest import REPO
from tests.unit.deploy.services_under_deploy import SERVICES, Service
from tests.unit.deploy.test_deploy_image_dependencies import installable_closure

DEV_LOCK = REPO / "requirements.lock"
PACKAGE_DIRS = [
    REPO / "libs" / "events",
    REPO / "libs" / "runtime",
    REPO / "deploy" / "localstack",
    *sorted(p.parent for p in (REPO / "services").glob("*/pyproject.toml")),
]
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")
REGENERATE = "run `make lock` and commit the locks"


def pyproject(directory: Path) -> dict[str, object]:
    return tomllib.loads((directory / "pyproject.toml").read_text())


def _project(directory: Path) -> dict[str, object]:
    project = pyproject(directory)["project"]
    assert isinstance(project, dict)
    return project


OURS = {canonicalize_name(str(_project(d)["name"])) for d in PACKAGE_DIRS}


@dataclass(frozen=True)
class Entry:
    """One requirement of a lock file: the logical line (continuations joined) parsed."""

    requirement: Requirement
    hashes: tuple[str, ...]

    @property
    def name(self) -> str:
        return canonicalize_name(self.requirement.name)

    @property
    def version(self) -> str:
        (spec,) = self.requirement.specifier
        return spec.version

    def applies_here(self) -> bool:
        return self.requirement.marker is None or self.requirement.marker.evaluate()


def read_lock(path: Path) -> list[Entry]:
    """The lock's entries; fails on anything but `name==version [; marker] --hash=...` lines."""
    assert path.is_file(), f"{path.relative_to(REPO)} is missing: {REGENERATE}"
    text = re.sub(r"\s*#.*$", "", path.read_text(), flags=re.M).replace("\\\n", " ")
    entries: list[Entry] = []
    for line in filter(None, (raw.strip() for raw in text.splitlines())):
        assert not line.startswith("-"), f"{path.name}: option or editable line {line!r} (an index, a path...)"
        hashes = tuple(HASH.findall(line))
        spec = HASH.sub("", line).strip()
        requirement = Requirement(spec)
        assert requirement.url is None, f"{path.name}: {spec} is a direct URL"
        specs = list(requirement.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{path.name}: {spec} is not pinned with =="
        assert hashes, f"{path.name}: {spec} has no --hash"
        entries.append(Entry(requirement, hashes))
    return entries


def locked(path: Path) -> dict[str, Entry]:
    """Entries that apply to this interpreter and platform, by canonical name."""
    return {e.name: e for e in read_lock(path) if e.applies_here()}


def image_lock(service: Service) -> Path:
    return service.directory / "requirements.lock"


def declared(directory: Path, with_extras: bool = True) -> list[Requirement]:
    """A package's requirements (and those of all its extras)."""
    project = _project(directory)
    reqs = [Requirement(r) for r in project.get("dependencies", [])]  # type: ignore[attr-defined]
    if with_extras:
        for group in dict(project.get("optional-dependencies", {})).values():  # type: ignore[call-overload]
            reqs += [Requirement(r) for r in group]
    return reqs


def build_backends(directories: list[Path]) -> list[Requirement]:
    reqs: list[Requirement] = []
    for directory in directories:
        build = pyproject(directory)["build-system"]
        assert isinstance(build, dict)
        reqs += [Requirement(r) for r in build["requires"]]
    return reqs


def assert_locked(lock: Path, requirement: Requirement, why: str) -> None:
    entries = locked(lock)
    name = canonicalize_name(requirement.name)
    assert name in entries, f"{why} requires {requirement}, missing from {lock.relative_to(REPO)}: {REGENERATE}"
    version = entries[name].version
    assert requirement.specifier.contains(version, prereleases=True), (
        f"{why} requires {requirement}, {lock.relative_to(REPO)} has {version}: {REGENERATE}"
    )


def image_packages(service: Service) -> list[Path]:
    return [REPO / "libs" / "events", REPO / "libs" / "runtime", service.directory]


@pytest.mark.parametrize("lock", [DEV_LOCK, *(image_lock(s) for s in SERVICES.values())], ids=lambda p: p.parent.name)
def test_every_lock_entry_is_pinned_hashed_and_none_is_a_package_of_ours(lock: Path) -> None:
    entries = read_lock(lock)
    assert len(entries) > 20
    assert not OURS & {e.name for e in entries}, "our packages never come from an index"
    assert "make lock" in lock.read_text().splitlines()[1], "the lock says how it is regenerated"


def test_every_dependency_a_pyproject_or_requirements_dev_pins_is_in_the_dev_lock_at_that_version() -> None:
    for directory in PACKAGE_DIRS:
        for requirement in declared(directory):
            if canonicalize_name(requirement.name) not in OURS:
                assert_locked(DEV_LOCK, requirement, str(directory.relative_to(REPO)))
    for requirement in build_backends(PACKAGE_DIRS):
        assert_locked(DEV_LOCK, requirement, "build-system")
    tools = [line for line in (REPO / "requirements-dev.txt").read_text().splitlines() if line and line[0] != "#"]
    for line in tools:
        assert_locked(DEV_LOCK, Requirement(line.split("#")[0].strip()), "requirements-dev.txt")


@pytest.mark.parametrize("service", SERVICES.values(), ids=lambda s: s.name)
def test_each_image_lock_is_exactly_its_services_closure_at_the_dev_locks_versions(service: Service) -> None:
    lock = image_lock(service)
    entries = locked(lock)
    backends = {canonicalize_name(r.name) for r in build_backends(image_packages(service))}
    expected = (installable_closure(service) - OURS) | backends
    assert set(entries) == expected, (
        f"{lock.relative_to(REPO)}: extra {sorted(set(entries) - expected)} (no test tools in an image), "
        f"missing {sorted(expected - set(entries))}: {REGENERATE}"
    )
    for directory in image_packages(service):
        for requirement in declared(directory, with_extras=False):
            if canonicalize_name(requirement.name) not in OURS:
                assert_locked(lock, requirement, str(directory.relative_to(REPO)))
    dev = {e.name: e for e in read_lock(DEV_LOCK)}
    for entry in read_lock(lock):
        assert entry.name in dev and dev[entry.name].version == entry.version, f"{entry.name}: {REGENERATE}"
        assert set(entry.hashes) <= set(dev[entry.name].hashes), f"{entry.name}: hashes differ, {REGENERATE}"


def run_lines(dockerfile: str) -> list[str]:
    """RUN instructions with their continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", re.sub(r"^\s*#.*\n", "", dockerfile, flags=re.M))
    return [line[4:] for line in joined.splitlines() if line.startswith("RUN ")]


def pip_installs(commands: list[str]) -> list[str]:
    return [part.strip() for cmd in commands for part in cmd.split("&&") if re.search(r"\bpip install\b", part)]


@pytest.mark.parametrize("service", SERVICES.values(), ids=lambda s: s.name)
def test_every_dockerfile_installs_its_lock_with_hashes_and_our_packages_without_an_index(service: Service) -> None:
    text = service.dockerfile.read_text()
    assert re.search(rf"^COPY services/{service.name}/requirements.lock /src/requirements.lock$", text, re.M)
    installs = pip_installs(run_lines(text))
    assert len(installs) == 2, installs
    from_lock, ours = installs  # in this order: our packages are installed onto the locked ones
    assert from_lock.split()[2:] == ["--require-hashes", "--only-binary=:all:", "-r", "/src/requirements.lock"]
    flags = {word for word in ours.split() if word.startswith("-")}
    assert flags == {"--no-index", "--no-deps", "--no-build-isolation"}, ours
    paths = [word for word in ours.split()[2:] if not word.startswith("-")]
    assert paths == [f"/src/{p.relative_to(REPO)}" for p in image_packages(service)]


def test_the_makefile_installs_the_lock_with_hashes_and_our_packages_without_an_index() -> None:
    # What `make setup` would run to build the venv, printed, not run (-n), as if it were missing (-B).
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", ".venv/.installed"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    installs = pip_installs(re.sub(r"\\\n\s*", " ", result.stdout).splitlines())
    assert len(installs) == 2, result.stdout
    from_lock, ours = installs
    assert {"--require-hashes", "--only-binary=:all:"} <= set(from_lock.split())
    assert "-r requirements.lock" in from_lock
    words = ours.split()
    assert {"--no-index", "--no-deps", "--no-build-isolation"} <= set(words), ours
    editables = {words[i + 1].rstrip("/") for i, word in enumerate(words) if word == "-e"}
    assert editables == {str(d.relative_to(REPO)) for d in PACKAGE_DIRS}
    assert not [w for w in words[2:] if not w.startswith("-") and w.rstrip("/") not in editables]
    assert "pip check" in result.stdout, "the venv is checked for a dependency the lock missed"


@pytest.mark.parametrize("tool", sorted((REPO / "deploy" / "tools").glob("requirements-*.txt")), ids=lambda p: p.stem)
def test_every_deploy_tool_venv_is_pinned_with_hashes(tool: Path) -> None:
    entries = read_lock(tool)
    assert entries
    assert not OURS & {e.name for e in entries}

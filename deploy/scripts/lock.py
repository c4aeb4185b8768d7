"""Regenerate the hash-pinned lock files (`make lock`): requirements.lock and services/<name>/requirements.lock.

Why: every build installs exactly the reviewed files. `pip install --require-hashes` refuses a package whose
version is not pinned or whose download does not match a recorded sha256, so a compromised or re-uploaded
release, a package index serving other bytes, or a dependency that appeared upstream never reaches a venv or an
image. Our own packages (taifa-events, taifa-runtime, the services...) are resolved from this tree as editables
and left out of every lock, so their bare names can never be satisfied from a package index.

- requirements.lock: the development venv (`make setup`): every package of the repository with all its extras
  (so `TAIFA_TEST_SERVICES=containers` needs no unpinned install), the test and lint tools of
  requirements-dev.txt, and the build backend of our packages (they are installed without build isolation, so
  setuptools comes from the lock too).
- services/<name>/requirements.lock: that service's image: the service with libs/events and libs/runtime and
  the build backend, nothing else (no test tools), constrained to the versions of requirements.lock so that the
  tests run against the versions the images ship.

The resolution is universal (markers for every platform) for Python 3.11, the images' version and the oldest the
packages support; the hashes cover every file of each pinned release. uv runs with --no-config, so the
machine's pip or uv configuration (extra indexes, find-links) never leaks into the lock.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"  # the pinned uv of the tool venv .venv/tools/lock
PYTHON_VERSION = "3.11"
LIBS = ("libs/events", "libs/runtime")
DEV_TOOLS = REPO / "requirements-dev.txt"
DEV_LOCK = REPO / "requirements.lock"


def packages() -> list[Path]:
    """Every Python package of the repository (the Makefile's PACKAGES)."""
    found = [REPO / "libs" / "events", REPO / "libs" / "runtime", REPO / "deploy" / "localstack"]
    found += sorted(p.parent for p in (REPO / "services").glob("*/pyproject.toml"))
    return found


def services() -> list[Path]:
    """The services that have an image (deploy/docker/<name>/Dockerfile)."""
    return [p for p in packages() if p.parent.name == "services" and dockerfile(p).is_file()]


def dockerfile(service: Path) -> Path:
    return REPO / "deploy" / "docker" / service.name / "Dockerfile"


def pyproject(package: Path) -> dict[str, object]:
    return tomllib.loads((package / "pyproject.toml").read_text())


def name(package: Path) -> str:
    project = pyproject(package)["project"]
    assert isinstance(project, dict)
    return str(project["name"])


def extras(package: Path) -> list[str]:
    project = pyproject(package)["project"]
    assert isinstance(project, dict)
    return sorted(project.get("optional-dependencies", {}))


def editable(package: Path, with_extras: bool) -> str:
    chosen = extras(package) if with_extras else []
    return f"-e ./{package.relative_to(REPO)}" + (f"[{','.join(chosen)}]" if chosen else "")


def build_requires(package_dirs: list[Path]) -> list[str]:
    """The build backends our packages declare ([build-system] requires)."""
    requires: set[str] = set()
    for package in package_dirs:
        build = pyproject(package)["build-system"]
        assert isinstance(build, dict)
        requires.update(build["requires"])
    return sorted(requires)


def compile_lock(
    package_dirs: list[Path], extra_inputs: list[Path], output: Path, constraint: Path | None, with_extras: bool
) -> None:
    """uv pip compile with hashes; the packages as editables (resolved here, never from an index, not emitted)."""
    with tempfile.TemporaryDirectory() as tmp:
        editables = Path(tmp) / "packages.in"
        editables.write_text("".join(editable(p, with_extras) + "\n" for p in package_dirs))
        backends = Path(tmp) / "build-backend.in"
        backends.write_text("\n".join(build_requires(package_dirs)) + "\n")
        command = [
            str(UV), "pip", "compile", "--no-config", "--quiet", "--universal",
            "--python-version", PYTHON_VERSION, "--generate-hashes",
            "--custom-compile-command", "make lock", "--output-file", str(output),
        ]  # fmt: skip
        for package in packages():
            command += ["--no-emit-package", name(package)]
        if constraint is not None:
            command += ["--constraint", str(constraint)]
        command += [str(editables), *map(str, extra_inputs), str(backends)]
        subprocess.run(command, cwd=REPO, check=True)
    # uv names the temporary input files in its "# via" annotations; name what they stand for instead.
    text = output.read_text().replace(f"-r {editables}", "our packages").replace(f"-r {backends}", "build backend")
    output.write_text(text)


def rehash_tool_requirements(path: Path) -> None:
    """A deploy-test tool venv's requirements (deploy/tools/requirements-*.txt, installed by `make tools`).

    The file is its own input: its pins are resolved again (same versions) and written back with the hash of
    every file of each release, under its header comment. To change a tool, edit its pin there (dropping the
    transitive pins that no longer fit) and run `make lock`. Python 3.11.5 is the floor: checkov's soupsieve
    needs it.
    """
    lines = path.read_text().splitlines(keepends=True)
    header = "".join(lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))])
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "out.txt"
        command = [
            str(UV), "pip", "compile", "--no-config", "--quiet", "--universal", "--python-version", "3.11.5",
            "--generate-hashes", "--no-header", "--no-annotate", "--output-file", str(output), str(path),
        ]  # fmt: skip
        subprocess.run(command, cwd=REPO, check=True)
        path.write_text(header + output.read_text())


def main() -> int:
    if not UV.is_file():
        print(f"{UV} is missing: run `make lock` (it installs the pinned uv first)", file=sys.stderr)
        return 1
    compile_lock(packages(), [DEV_TOOLS], DEV_LOCK, None, with_extras=True)
    print(f"wrote {DEV_LOCK.relative_to(REPO)}")
    for service in services():
        lock = service / "requirements.lock"
        compile_lock([REPO / lib for lib in LIBS] + [service], [], lock, DEV_LOCK, with_extras=False)
        print(f"wrote {lock.relative_to(REPO)}")
    for tool in (REPO / "deploy" / "tools").glob("requirements-*.txt"):
        if tool.name != "requirements-lock.txt":  # uv itself: see that file's header
            rehash_tool_requirements(tool)
            print(f"wrote {tool.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

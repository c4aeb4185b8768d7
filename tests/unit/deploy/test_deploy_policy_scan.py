"""checkov passes on the rendered manifests and the Dockerfiles, hadolint on the Dockerfiles; every
skipped check carries its reason beside it, and the scanners do catch a real defect."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.conftest import CHECKOV, DEPLOY, HADOLINT, K8S, Rendered, require_tool, run

DOCKERFILES = sorted((DEPLOY / "docker").glob("*/Dockerfile"))
MIN_REASON_LENGTH = 40


def checkov(*args: str | Path) -> list[dict[str, Any]]:
    """checkov's JSON reports (one per framework) without network access (--skip-download)."""
    result = run([require_tool(CHECKOV), *args, "--skip-download", "--output", "json"], check=False)
    assert result.returncode in (0, 1), f"checkov crashed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def failed(reports: list[dict[str, Any]]) -> list[str]:
    return [f"{c['check_id']} {c['resource']} {c['file_path']}" for r in reports for c in r["results"]["failed_checks"]]


@pytest.fixture(scope="session")
def manifest_reports(rendered: dict[str, Rendered]) -> list[dict[str, Any]]:
    files: list[str | Path] = []
    for r in rendered.values():
        files += ["--file", r.path]
    return checkov(*files, "--framework", "kubernetes")


@pytest.fixture(scope="session")
def dockerfile_reports() -> list[dict[str, Any]]:
    return checkov("--directory", DEPLOY / "docker", "--framework", "dockerfile")


def test_checkov_passes_on_the_rendered_manifests(manifest_reports: list[dict[str, Any]]) -> None:
    assert not failed(manifest_reports)
    assert sum(r["summary"]["passed"] for r in manifest_reports) > 300  # it really scanned every rendering


def test_checkov_passes_on_the_dockerfiles(dockerfile_reports: list[dict[str, Any]]) -> None:
    assert not failed(dockerfile_reports)
    scanned = {c["file_path"] for r in dockerfile_reports for c in r["results"]["passed_checks"]}
    assert len(scanned) == len(DOCKERFILES) == 3


def test_hadolint_passes_on_the_dockerfiles() -> None:
    run([require_tool(HADOLINT), *DOCKERFILES])


def declared_skips() -> dict[str, str]:
    """check id -> reason for every skip written in the sources (k8s annotations, Dockerfile comments)."""
    skips: dict[str, str] = {}
    for path in K8S.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            annotations = ((doc or {}).get("metadata") or {}).get("annotations") or {} if isinstance(doc, dict) else {}
            for key, value in annotations.items():
                if key.startswith("checkov.io/skip"):
                    check, _, reason = str(value).partition("=")
                    skips[check] = reason
    for dockerfile in DOCKERFILES:
        for match in re.finditer(r"^#\s*checkov:skip=([A-Z0-9_]+):(.*)$", dockerfile.read_text(), re.M):
            skips[match.group(1)] = match.group(2)
    return skips


def test_every_skipped_check_is_justified_beside_it_and_still_needed(
    manifest_reports: list[dict[str, Any]], dockerfile_reports: list[dict[str, Any]]
) -> None:
    skipped = [c for r in manifest_reports + dockerfile_reports for c in r["results"]["skipped_checks"]]
    for check in skipped:
        reason = (check.get("check_result") or {}).get("suppress_comment", "")
        assert len(reason) >= MIN_REASON_LENGTH, f"{check['check_id']} on {check['resource']} has no real reason"
    declared = declared_skips()
    assert declared, "the skips should be found in the sources"
    for check_id, reason in declared.items():
        assert len(reason.strip()) >= MIN_REASON_LENGTH, check_id
    # A skip that no longer suppresses anything is stale: remove it rather than keep a silent exception.
    assert set(declared) == {c["check_id"] for c in skipped}


def test_the_scanners_catch_a_root_writable_container_and_a_root_image(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    objects = [dict(o) for o in rendered["prod"].objects]
    relay = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "relay")
    security = relay["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    security["readOnlyRootFilesystem"] = False
    security["allowPrivilegeEscalation"] = True
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump_all(objects))
    dockerfile = (DEPLOY / "docker" / "relay" / "Dockerfile").read_text()
    (tmp_path / "Dockerfile").write_text(re.sub(r"^USER .*$", "", dockerfile, flags=re.M))
    ids = {c.split()[0] for c in failed(checkov("--directory", tmp_path, "--framework", "kubernetes", "dockerfile"))}
    assert {"CKV_K8S_22", "CKV_K8S_20", "CKV_DOCKER_3"} <= ids
    unpinned = tmp_path / "Unpinned.Dockerfile"
    unpinned.write_text(dockerfile.replace("FROM ${BASE_IMAGE} AS build", "FROM python:latest AS build"))
    lint = run([require_tool(HADOLINT), unpinned], check=False)
    assert lint.returncode != 0 and "DL3007" in lint.stdout

"""Running the images with podman as the manifests run them, for the image and compose tests (marker `images`).

Every podman call reads deploy/podman/containers.conf through CONTAINERS_CONF and is bounded by a timeout. A
missing or broken podman fails the test with podman's own words; it never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from taifa_localstack.process import free_port

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / "deploy" / "podman" / "containers.conf"
IMAGES_SCRIPT = REPO / "deploy" / "scripts" / "images.sh"
COMPOSE_FILE = REPO / "deploy" / "compose.yaml"
REGISTRY = "ghcr.io/taifa-mail"
TAG = "dev"
# What the Kubernetes manifests ask of every container (deploy/k8s: runAsUser/runAsGroup 10001,
# readOnlyRootFilesystem, capabilities drop ALL, allowPrivilegeEscalation false, an emptyDir on /tmp).
HARDENED = (
    "--read-only",
    "--read-only-tmpfs=false",
    "--tmpfs=/tmp:rw,size=64m",
    "--user=10001:10001",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
)
BUILD_TIMEOUT = 1200.0


def env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], env=env(), capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def require_podman() -> None:
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: `make setup` installs it (deploy/scripts/system-packages.sh)")
    info = podman("info", timeout=60, check=False)
    if info.returncode != 0:
        pytest.fail(f"podman cannot run here (CONTAINERS_CONF={CONTAINERS_CONF}):\n{info.stderr[-2000:]}")


def build(*targets: str) -> str:
    """deploy/scripts/images.sh from the working tree as it is; its output (Python versions, base digest)."""
    result = subprocess.run(
        ["bash", str(IMAGES_SCRIPT), *targets],
        env=env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    output = f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    assert result.returncode == 0, f"images.sh {' '.join(targets)} failed:\n{output}"
    return result.stdout


def services() -> list[str]:
    """Every service with an image: deploy/docker/<name>/Dockerfile."""
    return sorted(p.parent.name for p in (REPO / "deploy" / "docker").glob("*/Dockerfile"))


def image(service: str) -> str:
    return f"{REGISTRY}/{service}:{TAG}"


def console_scripts(service: str) -> list[str]:
    """The service's commands, read from its pyproject.toml (every one must answer --help in the image)."""
    project = tomllib.loads((REPO / "services" / service / "pyproject.toml").read_text())["project"]
    return sorted(project.get("scripts", {}))


def compose_image(service: str) -> str:
    return str(yaml.safe_load(COMPOSE_FILE.read_text())["services"][service]["image"])


def poll(what: str, check: Callable[[], object], timeout: float, diagnose: Callable[[], str] = lambda: "") -> object:
    """`check()`'s first truthy result within `timeout` s (exceptions count as not yet); else fail."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - not ready yet: the last one is reported
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what} not within {timeout}s (last error: {last!r})\n{diagnose()}")


class Pod:
    """Containers on one private podman network; removed (with the network) by `close()`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.network = self.prefix
        self.names: list[str] = []
        podman("network", "create", self.network)

    def run(
        self,
        name: str,
        image_name: str,
        *command: str,
        environment: dict[str, str] | None = None,
        publish: Sequence[int] = (),
        volumes: Sequence[str] = (),
        hardened: bool = True,
        entrypoint: str | None = None,
        detach: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """`podman run` with the network alias `name`; published ports on 127.0.0.1 only (a free_port() host port)."""
        full = f"{self.prefix}-{name}"
        args = ["run", "--name", full, "--network", self.network, "--network-alias", name]
        args += list(HARDENED) if hardened else []
        for key, value in (environment or {}).items():
            args += ["--env", f"{key}={value}"]
        for port in publish:
            # A host port of our choosing, outside the ephemeral range podman's random ones come from (free_port).
            args += ["--publish", f"127.0.0.1:{free_port()}:{port}"]
        for volume in volumes:
            args += ["--volume", volume]
        if entrypoint:
            args += ["--entrypoint", entrypoint]
        args += ["--detach"] if detach else []
        self.names.append(full)
        result = podman(*args, image_name, *command, timeout=timeout, check=False)
        if detach:
            assert result.returncode == 0, f"{name} did not start:\n{result.stderr[-2000:]}"
            self.assert_loopback_only(name)
        return result

    def container(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def host_port(self, name: str, port: int) -> int:
        mapping = podman("port", self.container(name), f"{port}/tcp").stdout.strip().splitlines()[0]
        host, _, host_port = mapping.rpartition(":")
        assert host == "127.0.0.1", mapping
        return int(host_port)

    def assert_loopback_only(self, name: str) -> None:
        inspected = json.loads(podman("inspect", self.container(name)).stdout)[0]
        bindings = inspected["HostConfig"].get("PortBindings") or {}
        for port, hosts in bindings.items():
            for host in hosts or []:
                assert host["HostIp"] == "127.0.0.1", f"{name} publishes {port} on {host['HostIp'] or 'every address'}"

    def exec(self, name: str, *command: str, timeout: float = 60.0, check: bool = True) -> str:
        return podman("exec", self.container(name), *command, timeout=timeout, check=check).stdout

    def logs(self, name: str) -> str:
        result = podman("logs", "--tail", "40", self.container(name), check=False)
        return f"--- {name} logs ---\n{result.stdout[-3000:]}{result.stderr[-3000:]}"

    def running(self, name: str) -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", self.container(name), check=False)
        return state.stdout.strip() == "true"

    def close(self) -> None:
        if self.names:
            podman("rm", "--force", "--time", "3", *self.names, timeout=120, check=False)
        podman("network", "rm", "--force", self.network, timeout=60, check=False)


@contextmanager
def pod(prefix: str) -> Iterator[Pod]:
    made = Pod(prefix)
    try:
        yield made
    finally:
        made.close()

"""The testcontainers path (`TAIFA_TEST_SERVICES=containers`) in `make test`: the whole integration suite that way is
`make test-containers` (about 16 minutes here, too long for `make test`), so this runs a slice of it through the same
script, for real: the harness's round trips to PostgreSQL, Redis and the broker, and the projector consuming from the
broker into PostgreSQL and Redis, each service a container started by testcontainers through `podman system
service`. A broken stand-in image, container fixture or socket set-up fails here, in CI."""

from __future__ import annotations

import os
import re
import subprocess
from datetime import UTC, datetime

import pytest

from tests.images.podman_support import CONTAINERS_CONF, REPO, podman, require_podman

pytestmark = [pytest.mark.images, pytest.mark.timeout(900)]

SLICE = (
    "tests/integration/harness/test_local_services.py",
    "tests/integration/projector/test_projector_consume.py",
)


def test_a_slice_of_the_integration_suite_passes_with_services_in_containers() -> None:
    require_podman()
    environment = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    environment.pop("TAIFA_TEST_SERVICES", None)
    began = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    run = subprocess.run(
        ["bash", "deploy/scripts/test-containers.sh", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra", *SLICE],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    summary = re.search(r"(\d+) passed", output)
    assert summary is not None and int(summary.group(1)) >= 9, output[-4000:]
    assert not re.search(r"\d+ (skipped|failed|error)", output), output[-4000:]

    # The slice really ran against containers (not the local processes a lost setting would fall back to): podman
    # started one of each infrastructure image meanwhile.
    started = podman(
        "events", "--since", began, "--stream=false", "--filter", "event=start", "--format", "{{.Image}}", timeout=60
    ).stdout
    for image in ("postgres", "redis", "kafka"):
        assert image in started, f"no {image} container was started by the slice; podman saw: {started}"

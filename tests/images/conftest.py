"""The images of deploy/docker built once per session from the working tree (deploy/scripts/images.sh), with the
stand-ins for compose's infrastructure images. Layers are podman's cache, so a warm build only redoes what changed."""

from __future__ import annotations

import pytest

from tests.images.podman_support import build, require_podman


@pytest.fixture(scope="session")
def built_images() -> str:
    """images.sh's output: each image's Python version and the base's digest."""
    require_podman()
    return build("services", "infra")

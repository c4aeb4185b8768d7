"""deploy/scripts/compose.sh's waits on the one-shot services (podman path): a one-shot service that fails is
started again a bounded number of times, and the script fails with its exit code once those are spent.

The script's functions run for real (the script is sourced); `podman` is a shell stub first on PATH that records
every call and answers `podman wait` with the exit codes the test lines up.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.unit.deploy.conftest import REPO

SCRIPT = REPO / "deploy" / "scripts" / "compose.sh"
BASH = shutil.which("bash") or "/bin/bash"

FAKE_PODMAN = r"""#!/bin/sh
echo "podman $*" >> "$FAKE_LOG"
case "$1" in
    ps) echo "cid-of-the-service" ;;
    wait) code=$(head -1 "$FAKE_CODES"); sed -i 1d "$FAKE_CODES"; echo "${code:-0}" ;;
    logs) echo "the service's last lines" ;;
esac
exit 0
"""


def _wait_done(
    tmp_path: Path, codes: list[int], retries: int | None = None
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    podman = bin_dir / "podman"
    podman.write_text(FAKE_PODMAN)
    podman.chmod(0o755)
    log, code_file = tmp_path / "calls.log", tmp_path / "codes"
    code_file.write_text("".join(f"{code}\n" for code in codes))
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKE_LOG": str(log),
        "FAKE_CODES": str(code_file),
        "TAIFA_COMPOSE_TIMEOUT": "20",
    }
    if retries is not None:
        env["TAIFA_COMPOSE_RETRIES"] = str(retries)
    result = subprocess.run(
        [BASH, "-c", f'source "{SCRIPT}" && wait_done kafka-topics && echo done'],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


def test_a_one_shot_service_that_succeeds_is_never_started_again(tmp_path: Path) -> None:
    result, calls = _wait_done(tmp_path, [0])
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr
    assert not [call for call in calls if call.startswith("podman start")]


def test_a_one_shot_service_that_fails_once_is_started_again_and_its_success_is_enough(tmp_path: Path) -> None:
    result, calls = _wait_done(tmp_path, [1, 0])
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr
    assert calls.count("podman start cid-of-the-service") == 1
    assert "kafka-topics exited with 1; starting it again" in result.stderr
    assert "the service's last lines" in result.stderr  # why it failed is shown


def test_a_one_shot_service_that_keeps_failing_fails_the_script_after_the_retries(tmp_path: Path) -> None:
    result, calls = _wait_done(tmp_path, [1, 1, 3, 0])
    assert result.returncode == 1 and "done" not in result.stdout
    assert calls.count("podman start cid-of-the-service") == 2
    assert result.stderr.rstrip().endswith("compose.sh: kafka-topics exited with 3")


def test_no_retries_when_told_none(tmp_path: Path) -> None:
    result, calls = _wait_done(tmp_path, [2, 0], retries=0)
    assert result.returncode == 1
    assert not [call for call in calls if call.startswith("podman start")]
    assert result.stderr.rstrip().endswith("compose.sh: kafka-topics exited with 2")

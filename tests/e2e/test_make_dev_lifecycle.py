"""`make dev` as a newcomer runs it: reaches ready, refuses a second start, and Ctrl-C leaves nothing running."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from taifa_localstack import wait_until

from tests.process_tree import alive, descendants, kill_tree

TOOL = Path(sys.executable).parent / "taifa-stack"


def test_make_dev_reaches_ready_refuses_a_second_start_and_stops_cleanly(tmp_path: Path) -> None:
    state = tmp_path / ".taifa"
    cmd = [str(TOOL), "dev", "--free-ports", "--workdir", str(state)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    children: set[int] = set()
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            output.append(line)
            if "Ctrl-C stops everything" in line:
                break
        assert (state / "dev.env").exists(), "".join(output)
        assert any("ready    relay" in line for line in output), "progress is shown per component"
        children = descendants(proc.pid)
        assert len(children) >= 7, "infra (3), sink, projector, api, relay"

        second = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 1
        assert "already running" in second.stderr

        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0
        wait_until(lambda: not any(alive(pid) for pid in children), 30, "every child gone")
        assert not (state / "dev.env").exists(), "dev.env only exists while the stack runs"
    finally:
        kill_tree(proc, children)

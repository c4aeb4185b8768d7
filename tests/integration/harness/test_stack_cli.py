"""`make stack` (taifa-stack run) leaves no process behind after Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from taifa_localstack import wait_until

from tests.process_tree import alive, descendants, kill_tree


def test_ctrl_c_of_make_stack_leaves_nothing_running(tmp_path: Path) -> None:
    tool = Path(sys.executable).parent / "taifa-stack"
    proc = subprocess.Popen([str(tool), "run", "--workdir", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    children: set[int] = set()
    try:
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        assert any(line.startswith("TAIFA_DATABASE_URL=") for line in lines), lines
        children = descendants(proc.pid)
        names = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in children if alive(pid)}
        assert {"redis-server"} <= names and any(n.startswith("tansu") for n in names) and "postgres" in names, names

        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        wait_until(lambda: not any(alive(pid) for pid in children), 20, "every child gone")
    finally:
        kill_tree(proc, children)

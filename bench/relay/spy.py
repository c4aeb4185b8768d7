"""`bench_relay.py --profile DIR`: py-spy (pinned in requirements-dev.txt, so in the dev venv) attached to the
relay for one extra run of each load, after the measured ones (the sampler costs CPU of its own). Writes
DIR/relay-<load>.txt in py-spy's collapsed-stack format (flamegraph.pl and speedscope read it) and prints
the functions with the most samples, by their own time and including what they call."""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

PY_SPY = Path(sys.executable).parent / "py-spy"


class Profiler:
    def __init__(self, pid: int, out: Path, *, native: bool = False) -> None:
        self.out = out
        out.parent.mkdir(parents=True, exist_ok=True)
        command = [str(PY_SPY), "record", "--pid", str(pid), "--rate", "250", "--subprocesses"]
        # --native pauses the relay at each sample (py-spy cannot unwind C frames without): slower, but shows what
        # the event loop's own time (uvloop, OpenSSL, the kernel calls) is made of.
        command += ["--native"] if native else ["--nonblocking"]
        command += ["--format", "raw", "--output", str(out)]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        self._process.send_signal(2)  # SIGINT: py-spy writes its output and exits
        self._process.wait(30)
        summarize(self.out)


def summarize(path: Path, top: int = 25) -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [
            frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
            for frame in stack.split(";")
            if frame
        ]
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    print(f"\n  py-spy {path.name}: {total} samples; top by own time, then including callees:")
    for name, n in own.most_common(top):
        print(f"    own {n / total * 100:5.1f} %  {name}")
    for name, n in inclusive.most_common(top):
        print(f"    incl {n / total * 100:5.1f} %  {name}")
